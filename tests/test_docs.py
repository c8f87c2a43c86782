"""The README's commands, run as a newcomer runs them on a fresh machine.

Every line of the README's ``bash`` blocks runs in order, in one fresh copy of the project, by a
shell with a bare Python first on PATH and nothing of the suite's own environment (conftest's
``newcomer``), so a command that works only with the suite's help fails here; the quickstart's
``make run`` is conftest's ``made_run``, whose build the other end-to-end tests reuse. A tag at
the end of a line says how it runs (README, "Tests"): ``(long)`` only under ``make test-all``,
``(hours)``, ``(needs …)`` never; ``until stopped`` is started, waited for and stopped as Ctrl-C would.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT, in_newcomer_shell, newcomer_shell

README = ROOT / "README.md"
MIRROR_PLACEHOLDER = "/path/to/mirror"
SERVED = re.compile(r"Prefect UI: http://\S+")
SERVE_STARTUP_S = 300
HINT = "source .venv/bin/activate"


@dataclass(frozen=True)
class Command:
    line: str
    section: str

    @property
    def comment(self) -> str:
        return self.line.partition("  #")[2]

    def skip_reason(self) -> str | None:
        """Why the docs test cannot run this line here, or None."""
        if self.line.split("#")[0].split() == ["make", "test"]:
            return "the test suite itself"
        for tag, why in (("(hours", "takes hours; the quick form below it runs instead"),
                         ("needs internet", "needs the internet"), ("needs a cluster", "needs a Dask cluster")):
            if tag in self.comment:
                return why
        return None

    @property
    def long(self) -> bool:
        return "(long)" in self.comment

    @property
    def serves(self) -> bool:
        return "until stopped" in self.comment

    @property
    def sets_up_the_shell(self) -> bool:
        return self.line.startswith(("source ", "export ", ". "))


def readme_commands(text: str) -> list[Command]:
    """Each command line of each ```bash block, with the heading it is under."""
    commands, section, in_block = [], "", False
    for line in text.splitlines():
        if line.startswith("#") and not in_block:
            section = line.lstrip("# ").strip()
        elif line.strip() == "```bash":
            in_block = True
        elif line.strip() == "```":
            in_block = False
        elif in_block and line.strip() and not line.lstrip().startswith("#"):
            commands.append(Command(line.strip(), section))
    return commands


COMMANDS = readme_commands(README.read_text())


def case(command: Command):
    marks = [pytest.mark.long] if command.long else []
    return pytest.param(command, marks=marks, id=f"{command.section}: {command.line.split('  #')[0].strip()}")


def as_written(command: Command, mirror_root: Path | None) -> str:
    if MIRROR_PLACEHOLDER not in command.line:
        return command.line
    if mirror_root is None:
        pytest.skip("no data mirror: set LESSONFLOW_DATA_MIRROR (CI provides ../shared/data)")
    return command.line.replace(MIRROR_PLACEHOLDER, str(mirror_root))


def mirror_or_none() -> Path | None:
    for candidate in filter(None, [os.environ.get("LESSONFLOW_DATA_MIRROR"), str(ROOT.parent / "shared" / "data")]):
        if (Path(candidate) / "mnist").is_dir():
            return Path(candidate).resolve()
    return None


@pytest.mark.parametrize("command", [case(command) for command in COMMANDS])
def test_readme_command_runs_as_written(command: Command, newcomer: dict, request):
    if reason := command.skip_reason():
        pytest.skip(f"{command.line.split('  #')[0].strip()!r}: {reason}")
    line = as_written(command, mirror_or_none())
    if command.serves:
        serve_then_stop(newcomer, line)
    else:
        done = request.getfixturevalue("made_run")[0] if line.split("  #")[0].strip() == "make run" else \
            in_newcomer_shell(newcomer, line)
        assert done.returncode == 0, f"{line}\nexited {done.returncode}\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    if command.sets_up_the_shell:
        newcomer["setup"].append(line)


def serve_then_stop(newcomer: dict, line: str) -> None:
    """Start a command that serves until stopped, wait until it says it serves, then press Ctrl-C."""
    serving = subprocess.Popen(newcomer_shell(newcomer, line), cwd=newcomer["repo"], env=newcomer["env"], text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    seen, deadline = [], time.monotonic() + SERVE_STARTUP_S
    try:
        while time.monotonic() < deadline and not any(SERVED.search(text) for text in seen):
            text = serving.stdout.readline()
            if not text and serving.poll() is not None:
                break
            seen.append(text)
        assert any(SERVED.search(text) for text in seen), f"{line} never said it serves:\n{''.join(seen)[-6000:]}"
    finally:
        os.killpg(serving.pid, signal.SIGINT)
        try:
            serving.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(serving.pid, signal.SIGKILL)
            raise AssertionError(f"{line} did not stop within 120 s of Ctrl-C")


def test_a_stage_under_the_machines_python_says_which_python_and_what_to_do(newcomer: dict):
    done = subprocess.run(["python3", "-m", "stages.train", "mnist-logreg"], cwd=newcomer["repo"],
                          env=newcomer["env"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert HINT in done.stderr and "lacks torch" in done.stderr, done.stderr


def test_dvc_of_the_venv_without_activation_fails_with_the_hint_not_a_traceback(newcomer: dict):
    """`.venv/bin/dvc` runs the stages with the shell's `python`: without activation, the machine's."""
    if not (newcomer["repo"] / ".venv" / "bin" / "dvc").exists():
        pytest.fail("the README's commands above did not create .venv")
    done = subprocess.run([".venv/bin/dvc", "repro", "-f", "-s", "train@mnist-logreg"], cwd=newcomer["repo"],
                          env=newcomer["env"], capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert HINT in output and "Traceback" not in output, output
