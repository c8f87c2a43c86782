"""Stages handed to the warm server (lessonflow/warm.py) behave as the plain processes they replace."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, clone, project_env, read_json, run, wait_until_gone

# A stage that reports what it sees; `exit N`, `sleep [SECONDS]` (writes its pid, then waits) and `echo` modes.
PROBE = '''
import json, os, sys, time
import torch
mode = sys.argv[1]
with open(f"/proc/{os.getppid()}/cmdline", "rb") as parent:
    launched_by = parent.read().replace(b"\\0", b" ").decode()
print(json.dumps({"marker": MARKER, "argv": sys.argv, "cwd": os.getcwd(), "probe_env": os.environ.get("PROBE"),
                  "umask": oct(os.umask(0o022)), "launched_by": launched_by, "stdout_tty": sys.stdout.isatty(),
                  "torch_threads": torch.get_num_threads(), "parent": os.getppid()}))
print("to stderr", file=sys.stderr)
if mode == "exit":
    sys.exit(int(sys.argv[2]))
if mode == "sleep":
    with open("stage.pid", "w") as out:
        out.write(str(os.getpid()))
    time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 120)
'''


@pytest.fixture
def probe_project(tmp_path) -> Path:
    """The real `stages` package with one extra stage module, `stages.probe`."""
    project = tmp_path / "probe"
    shutil.copytree(ROOT / "stages", project / "stages")
    write_probe(project, "first")
    return project


def write_probe(project: Path, marker: str) -> None:
    (project / "stages" / "probe.py").write_text(f"MARKER = {marker!r}\n{PROBE}")


def probe(project: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, dict]:
    result = subprocess.run([sys.executable, "-m", "stages.probe", *args], cwd=project,
                            env=project_env(PROBE="passed through", **env), capture_output=True, text=True, timeout=300,
                            umask=0o027)
    return result, json.loads(result.stdout.splitlines()[0])


@pytest.mark.parametrize("threads", [{}, {"OMP_NUM_THREADS": "1"}], ids=["default threads", "OMP_NUM_THREADS=1"])
def test_a_stage_in_the_warm_server_sees_what_a_plain_process_would(probe_project, threads):
    result, seen = probe(probe_project, "exit", "3", **threads)
    assert "lessonflow.warm serve" in seen["launched_by"]
    assert result.returncode == 3
    assert seen["argv"] == [str(probe_project / "stages" / "probe.py"), "exit", "3"]
    assert Path(seen["cwd"]) == probe_project
    assert seen["probe_env"] == "passed through"
    assert seen["umask"] == oct(0o027)
    assert not seen["stdout_tty"]
    assert result.stderr.strip().endswith("to stderr")
    if threads:
        assert seen["torch_threads"] == 1

    # switched off: the same stage runs in the process that was started, with the same view
    result, plain = probe(probe_project, "exit", "3", LESSONFLOW_WARM="off", **threads)
    assert "lessonflow.warm serve" not in plain["launched_by"]
    assert result.returncode == 3
    assert {key: value for key, value in plain.items() if key not in ("launched_by", "parent")} == \
           {key: value for key, value in seen.items() if key not in ("launched_by", "parent")}


def test_edited_stage_code_takes_effect_in_the_warm_server(probe_project):
    assert probe(probe_project, "exit", "0")[1]["marker"] == "first"
    write_probe(probe_project, "second")
    result, seen = probe(probe_project, "exit", "0")
    assert "lessonflow.warm serve" in seen["launched_by"]
    assert seen["marker"] == "second"


def wait_for_stage(process: subprocess.Popen, project: Path) -> int:
    """The pid of the stage that `process` handed to the server, once it is running."""
    pid_file = project / "stage.pid"
    deadline = time.monotonic() + 120
    while not pid_file.exists() or not pid_file.read_text():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)
    return int(pid_file.read_text())


def test_a_stopped_server_lets_the_running_stage_finish_and_the_next_stage_gets_a_new_server(probe_project):
    from lessonflow import warm

    process = subprocess.Popen([sys.executable, "-m", "stages.probe", "sleep", "3"], cwd=probe_project,
                               env=project_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_stage(process, probe_project)
    assert warm.stop()
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr  # the stage ran to its end and its caller heard so
    server = json.loads(stdout.splitlines()[0])["parent"]
    wait_until_gone(server, "the stopped server")
    result, seen = probe(probe_project, "echo")
    assert result.returncode == 0 and seen["parent"] != server
    assert os.readlink(f"/proc/{seen['parent']}/cwd") == "/", "the new server keeps the project's folder busy"


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_signal_to_the_stage_process_reaches_the_stage(probe_project, sent):
    """Ctrl-C, `kill` and `kill -9` of `python -m stages.<verb>` stop the stage running in the server."""
    process = subprocess.Popen([sys.executable, "-m", "stages.probe", "sleep"], cwd=probe_project, env=project_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stage = wait_for_stage(process, probe_project)
    assert stage != process.pid  # the stage really runs elsewhere: in the warm server's child
    process.send_signal(sent)
    process.wait(timeout=30)
    assert process.returncode == -sent
    wait_until_gone(stage, "the stage, after its process")


def test_training_in_the_warm_server_gives_the_same_model_as_a_plain_process(quick_built, tmp_path):
    models = {}
    for warm in ("on", "off"):
        repo = clone(quick_built, tmp_path / warm)
        (repo / "models" / "mnist-logreg" / "model.pt").unlink()
        output = run(repo, sys.executable, "-m", "stages.train", "mnist-logreg",
                     env=project_env(LESSONFLOW_WARM=warm, LESSONFLOW_THREADS="1")).stdout
        assert "resuming" not in output
        models[warm] = (repo / "models" / "mnist-logreg" / "model.pt").read_bytes()
        metrics = read_json(repo / "results" / "mnist-logreg" / "train" / "metrics.json")
        models[f"{warm} metrics"] = {key: value for key, value in metrics.items()
                                     if not key.endswith("seconds") and key != "over_seeds"}  # timings
    assert models["on"] == models["off"] == (quick_built / "models" / "mnist-logreg" / "model.pt").read_bytes()
    assert models["on metrics"] == models["off metrics"]
