"""A stage past its time limit (flows/dvc_stages.py): stopped, reported as such, never taken for a success."""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import dvc, run, wait_until_gone, working_in

from flows.dvc_stages import StageTimedOut, call_dvc, stage_env, stop_tree

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def test_a_stopped_command_ends_by_its_signal_not_as_a_success():
    """psutil would reap the command first and Popen would then read exit status 0: a timed-out stage 'ran'."""
    process = subprocess.Popen(SLEEPER)
    stop_tree(process)
    assert process.wait(10) == -signal.SIGTERM


def test_a_command_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    child_pid = tmp_path / "child.pid"
    stubborn = ("import signal, subprocess, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                f"child = subprocess.Popen({SLEEPER!r}, preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN)); "
                f"open({str(child_pid)!r}, 'w').write(str(child.pid)); time.sleep(600)")
    process = subprocess.Popen([sys.executable, "-c", stubborn])
    while not child_pid.exists() or not child_pid.read_text():
        time.sleep(0.05)
    stop_tree(process, grace=1.0)
    assert process.wait(10) == -signal.SIGKILL
    wait_until_gone(int(child_pid.read_text()), "the command's own child")


def one_stage_project(tmp_path: Path, stage: str, code: str, output: str) -> Path:
    """A git and DVC repository whose one stage runs ``python -c code`` and writes ``output``."""
    repo = tmp_path / "repo"
    repo.mkdir()
    run(repo, "git", "init", "-q")
    dvc(repo, "init", "-q")
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {stage: {"cmd": f"python -c {shlex.quote(code)}",
                                                                       "outs": [output]}}}))
    return repo


def test_a_dvc_stage_past_its_deadline_raises_and_leaves_no_process(tmp_path):
    repo = one_stage_project(tmp_path, "hangs", "import time; time.sleep(600)", "never.txt")
    lines = []
    started = time.monotonic()
    with pytest.raises(StageTimedOut, match="ran past the stage time limit") as raised:
        call_dvc(repo, ["repro", "hangs"], stage_env(1), lines.append, deadline=time.monotonic() + 5)
    assert time.monotonic() - started < 30
    assert "Running stage 'hangs'" in str(raised.value)
    assert not working_in(repo), "the stopped stage's process is still running"
    assert not (repo / "never.txt").exists()


def test_a_dvc_command_that_finishes_in_time_returns_its_status(tmp_path):
    repo = one_stage_project(tmp_path, "quick", "open('done.txt', 'w')", "done.txt")
    code, lines = call_dvc(repo, ["repro", "quick"], stage_env(1), lambda _: None, deadline=time.monotonic() + 120)
    assert code == 0 and "Running stage 'quick'" in "\n".join(lines)
    assert (repo / "done.txt").exists()
