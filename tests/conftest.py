"""Shared fixtures: real copies of the project in temporary git repos, built with real DVC."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NOT_COPIED = ("tests/", "data/", "models/", "results/", "reports/", ".dvc/tmp", ".dvc/cache")
README_COMMAND_TIMEOUT_S = 2400
MNIST_LESSONS = ["mnist-logreg", "mnist-ann", "mnist-mlp", "mnist-cnn", "mnist-cnn-book"]


def project_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONUNBUFFERED": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **extra}
    env.pop("LESSONFLOW_DATA_MIRROR", None)
    env.update(extra)
    return env


def run(cwd: Path, *args: str, check: bool = True, env: dict | None = None, timeout: float = 1800):
    """Run a command in a project copy the way a user would, capturing its output for assertions."""
    result = subprocess.run(args, cwd=cwd, env=env or project_env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def dvc(cwd: Path, *args: str, **kwargs):
    return run(cwd, str(BIN / "dvc"), *args, **kwargs)


def copy_project(dest: Path, skip: tuple[str, ...] = NOT_COPIED) -> Path:
    """The committed project plus uncommitted source files, as a fresh git repo with one commit."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file() and not name.startswith(skip):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    git = ["git", "-c", "user.email=test@lessonflow.invalid", "-c", "user.name=lessonflow tests"]
    run(dest, "git", "init", "-q")
    run(dest, "git", "add", "-A")
    run(dest, *git, "commit", "-qm", "copy of the project")
    return dest


def commit_all(repo: Path, message: str) -> None:
    run(repo, "git", "add", "-A")
    run(repo, "git", "-c", "user.email=test@lessonflow.invalid", "-c", "user.name=lessonflow tests",
        "commit", "-qm", message)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def project_params() -> dict:
    """The project's params.yaml as a fresh dict, for a test to read or edit."""
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def stages_ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


class Killed(Exception):
    """Raised by ``killed_after_checkpoint`` where a kill would have stopped the training."""


@contextmanager
def killed_after_checkpoint(checkpoint: Path):
    """Stop the training inside the block as a kill right after its first checkpoint would: at the next
    training step (a forward pass of a module in training mode, seen by a real global PyTorch hook)."""
    import torch

    def stop(module, args) -> None:
        if module.training and checkpoint.exists():
            raise Killed(f"killed after {checkpoint.name} was written")

    hook = torch.nn.modules.module.register_module_forward_pre_hook(stop)
    try:
        with pytest.raises(Killed):
            yield
    finally:
        hook.remove()
    assert checkpoint.exists()


def killed_once_written(command: list[str], cwd: Path, env: dict, *checkpoints: Path) -> None:
    """Start a training process and SIGKILL it as soon as every checkpoint exists (each written by rename:
    complete once there); within 15 minutes, before it ends by itself."""
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 900
        while not all(checkpoint.exists() for checkpoint in checkpoints):
            assert process.poll() is None, "training ended before writing its checkpoints"
            assert time.monotonic() < deadline, "no checkpoints after 15 minutes"
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def pytest_configure(config) -> None:
    """One torch thread for the suite's own training, in process and in the stages it starts: each worker has
    a core, and two torch pools spinning on two cores slow everything, the README's `make run` beside them most.
    The newcomer's shell does not inherit it; a test that is about threads sets its own."""
    os.environ.setdefault("LESSONFLOW_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["LESSONFLOW_THREADS"]))


def pytest_collection_modifyitems(items) -> None:
    """A test of the whole default build belongs to `make test-all`: the build alone takes minutes.

    The files that run the README's commands (its `make run` builds it) come first and the files with
    such a test last, so that the build starts at once and the other workers run everything else
    meanwhile instead of waiting for it.
    """
    builders, readers = set(), set()
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "built_project" in fixtures:
            item.add_marker(pytest.mark.long)
            readers.add(item.path)
        elif "newcomer" in fixtures:
            builders.add(item.path)
    items.sort(key=lambda item: 2 if item.path in readers else 0 if item.path in builders else 1)  # stable


@contextmanager
def once_per_run(tmp_path_factory, name: str):
    """A folder every pytest-xdist worker of this run shares, held under a lock while the block runs: the
    first worker to arrive makes what is in it, the others wait and reuse it."""
    import fcntl

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above every worker's own
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield root / name


@pytest.fixture(scope="session")
def newcomer(tmp_path_factory) -> dict:
    """A fresh copy of the project and the environment of a shell on a fresh machine: a bare Python first
    on PATH, none of the suite's own environment (tests/test_docs.py runs the README's commands in it)."""
    with once_per_run(tmp_path_factory, "newcomer") as home:
        bare, repo = home / "bare-python", home / "lessonflow"
        if not (home / "made").is_file():
            shutil.rmtree(home, ignore_errors=True)  # what a worker that failed here left half made
            subprocess.run(["python3", "-m", "venv", "--without-pip", str(bare)], check=True,
                           env={**os.environ, "PATH": without_suite_venv(os.environ["PATH"])})
            copy_project(repo, skip=())
            (home / "made").touch()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("LESSONFLOW_", "PREFECT_", "DVC_", "VIRTUAL_ENV", "PYTHON", "PYTEST_"))}
    env.update(PATH=os.pathsep.join([str(bare / "bin"), without_suite_venv(os.environ["PATH"])]),
               PREFECT_HOME=str(home / "prefect"))  # the developer's own Prefect database stays out of it
    return {"repo": repo, "env": env, "setup": []}


def without_suite_venv(path: str) -> str:
    return os.pathsep.join(entry for entry in path.split(os.pathsep) if entry and Path(entry).resolve() != BIN.resolve())


def newcomer_shell(newcomer: dict, line: str) -> list[str]:
    """``line`` in the newcomer's shell, after the set-up lines (``source …``) the README had them run."""
    return ["bash", "-c", "\n".join(["set -e", *newcomer["setup"], line])]


def in_newcomer_shell(newcomer: dict, line: str) -> subprocess.CompletedProcess:
    """Run ``line`` as the newcomer would; past the time limit everything it started is killed, so that
    no orphaned ``dvc repro`` goes on writing in the project while the next test uses it."""
    with subprocess.Popen(newcomer_shell(newcomer, line), cwd=newcomer["repo"], env=newcomer["env"], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True) as shell:
        try:
            stdout, stderr = shell.communicate(timeout=README_COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(shell.pid, signal.SIGKILL)
            stdout, stderr = shell.communicate()
            stderr += f"\n(killed: still running after {README_COMMAND_TIMEOUT_S} s)"
    return subprocess.CompletedProcess(line, shell.returncode, stdout, stderr)


@pytest.fixture(scope="session")
def made_run(newcomer, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """The README's `make run` on the newcomer's machine, and a committed copy of the project it built.

    The docs test checks the command; the copy (without its .venv) is the default build every other
    end-to-end test reads, so the suite builds the default profile once, whichever worker asks first.
    """
    with once_per_run(tmp_path_factory, "made-run") as folder:
        record, built = folder / "make-run.json", folder / "repo"
        if not record.is_file():
            done = in_newcomer_shell(newcomer, "make run")  # recorded whatever its end: no worker runs it twice
            if done.returncode == 0:
                shutil.copytree(newcomer["repo"], built, symlinks=True,
                                ignore=lambda parent, names: [".venv"] if Path(parent) == newcomer["repo"] else [])
                commit_all(built, "built default profile")
            folder.mkdir(exist_ok=True)
            record.write_text(json.dumps({"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}))
        ran = json.loads(record.read_text())
    return subprocess.CompletedProcess("make run", ran["returncode"], ran["stdout"], ran["stderr"]), built


@pytest.fixture(scope="session")
def built_project(made_run) -> Path:
    """The default profile as `make run` built it; shared by the tests that only read its results."""
    done, repo = made_run
    assert done.returncode == 0, f"make run exited {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return repo


@pytest.fixture
def project(tmp_path) -> Path:
    return copy_project(tmp_path / "project")


QUICK_LESSONS = ["mnist-logreg", "mnist-cnn-book"]
ONE_THREAD = {"LESSONFLOW_THREADS": "1"}  # stages run side by side on 2 cores: no oversubscription


@pytest.fixture(scope="session")
def quick_built(tmp_path_factory) -> Path:
    """The two quickest MNIST lessons of the default profile, built by a real `dvc repro` and committed.

    Read-only: a test that changes things works on ``clone(quick_built, dest)``.
    """
    with once_per_run(tmp_path_factory, "quick") as folder:
        repo = folder / "repo"
        if not (folder / "made").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            copy_project(repo)
            dvc(repo, "repro", *(f"evaluate@{lesson}" for lesson in QUICK_LESSONS), env=project_env(**ONE_THREAD))
            commit_all(repo, "built the quick lessons")
            (folder / "made").touch()
    return repo


def snapshot(repo: Path) -> dict[str, tuple[int, bytes]]:
    """mtime and bytes of every output and of dvc.lock: 'untouched' means both stay the same."""
    files = [repo / "dvc.lock", *(path for top in ("data", "models", "results") for path in (repo / top).rglob("*"))]
    return {str(path.relative_to(repo)): (path.stat().st_mtime_ns, path.read_bytes())
            for path in files if path.is_file()}


def working_in(repo: Path) -> list:
    """Processes besides this one working in ``repo``: dvc, a stage, or its child in the warm server (which takes the stage's folder)."""
    import psutil

    return [process for process in psutil.process_iter(["cwd"])
            if process.info["cwd"] == str(repo) and process.pid != os.getpid()]


def quick_project(path: Path, cnn_epochs: int = 1, **orchestration) -> Path:
    """A committed copy of the project whose two quick lessons train one seed for seconds; ``orchestration``
    edits params.yaml."""
    from dvc.utils.serialize import modify_yaml

    repo = copy_project(path)
    with modify_yaml(str(repo / "params.yaml")) as params:
        params["lessons"]["mnist-logreg"].update(epochs=2, seeds=1)
        params["lessons"]["mnist-cnn-book"].update(epochs=cnn_epochs, seeds=1)
        params["orchestration"].update(orchestration)
    commit_all(repo, "quick lessons")
    return repo


def wait_until_gone(pid: int, what: str) -> None:
    """Until ``pid`` has exited (gone, or a zombie its adopter has yet to reap)."""
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
        assert time.monotonic() < deadline, f"{what} (pid {pid}) is still running"
        time.sleep(0.05)


def clone(repo: Path, dest: Path) -> Path:
    """A copy of a built project (git history, DVC cache, outputs and their mtimes) to change freely."""
    shutil.copytree(repo, dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The offline mirror of the real datasets (CI has it beside the clone)."""
    candidates = [os.environ.get("LESSONFLOW_DATA_MIRROR"), ROOT.parent / "shared" / "data"]
    for candidate in filter(None, candidates):
        if (Path(candidate) / "mnist").is_dir():
            return Path(candidate).resolve()
    pytest.skip("no data mirror: set LESSONFLOW_DATA_MIRROR (CI provides ../shared/data)")


@pytest.fixture(scope="session", autouse=True)
def no_warm_server_left_behind():
    """Every stage the tests start runs in the warm server (lessonflow/warm.py); it goes when the suite does."""
    yield
    from lessonflow import warm

    warm.stop()


class WebhookReceiver:
    """A real HTTP endpoint on loopback that keeps every JSON body posted to it, as a chat webhook would."""

    def __init__(self) -> None:
        import http.server
        import threading

        received = self.received = []
        arrived = self.arrived = []  # time.time() of each message, for tests of how soon it came

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                arrived.append(time.time())
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/lessonflow"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int = 1, timeout: float = 120) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(self.received) >= count, f"the webhook got {len(self.received)} message(s), expected {count}"
        return self.received


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.server.shutdown()
