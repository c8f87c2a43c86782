"""Stages handed to the warm server (lessonflow/warm.py) behave as the plain processes they replace."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, clone, project_env, read_json, run

# A stage that reports what it sees; `exit N`, `sleep` (writes its pid, then waits) and `echo` modes.
PROBE = '''
import json, os, sys, time
import torch
mode = sys.argv[1]
with open(f"/proc/{os.getppid()}/cmdline", "rb") as parent:
    launched_by = parent.read().replace(b"\\0", b" ").decode()
print(json.dumps({"marker": MARKER, "argv": sys.argv, "cwd": os.getcwd(), "probe_env": os.environ.get("PROBE"),
                  "umask": oct(os.umask(0o022)), "launched_by": launched_by, "stdout_tty": sys.stdout.isatty(),
                  "torch_threads": torch.get_num_threads()}))
print("to stderr", file=sys.stderr)
if mode == "exit":
    sys.exit(int(sys.argv[2]))
if mode == "sleep":
    with open("stage.pid", "w") as out:
        out.write(str(os.getpid()))
    time.sleep(120)
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
    assert {key: value for key, value in plain.items() if key != "launched_by"} == \
           {key: value for key, value in seen.items() if key != "launched_by"}


def test_edited_stage_code_takes_effect_in_the_warm_server(probe_project):
    assert probe(probe_project, "exit", "0")[1]["marker"] == "first"
    write_probe(probe_project, "second")
    result, seen = probe(probe_project, "exit", "0")
    assert "lessonflow.warm serve" in seen["launched_by"]
    assert seen["marker"] == "second"


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_signal_to_the_stage_process_reaches_the_stage(probe_project, sent):
    """Ctrl-C, `kill` and `kill -9` of `python -m stages.<verb>` stop the stage running in the server."""
    process = subprocess.Popen([sys.executable, "-m", "stages.probe", "sleep"], cwd=probe_project, env=project_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid_file = probe_project / "stage.pid"
    deadline = time.monotonic() + 120
    while not pid_file.exists() or not pid_file.read_text():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)
    stage = int(pid_file.read_text())
    assert stage != process.pid  # the stage really runs elsewhere: in the warm server's child
    process.send_signal(sent)
    process.wait(timeout=30)
    assert process.returncode == -sent
    deadline = time.monotonic() + 10
    while Path(f"/proc/{stage}").exists() and Path(f"/proc/{stage}/stat").read_text().split()[2] != "Z":
        assert time.monotonic() < deadline, f"the stage (pid {stage}) outlived its process"
        time.sleep(0.05)


def test_training_in_the_warm_server_gives_the_same_model_as_a_plain_process(quick_built, tmp_path):
    models = {}
    for warm in ("on", "off"):
        repo = clone(quick_built, tmp_path / warm)
        (repo / "models" / "mnist-logreg" / "model.pt").unlink()
        (repo / "models" / "mnist-logreg" / "checkpoint.pt").unlink(missing_ok=True)
        output = run(repo, sys.executable, "-m", "stages.train", "mnist-logreg",
                     env=project_env(LESSONFLOW_WARM=warm, LESSONFLOW_THREADS="1")).stdout
        assert "resuming" not in output
        models[warm] = (repo / "models" / "mnist-logreg" / "model.pt").read_bytes()
        metrics = read_json(repo / "results" / "mnist-logreg" / "train" / "metrics.json")
        models[f"{warm} metrics"] = {key: value for key, value in metrics.items() if not key.endswith("seconds")}
    assert models["on"] == models["off"] == (quick_built / "models" / "mnist-logreg" / "model.pt").read_bytes()
    assert models["on metrics"] == models["off metrics"]
