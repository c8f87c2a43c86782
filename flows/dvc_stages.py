"""The DVC side of the orchestration: which stages exist, which are stale, and running one of them.

Everything goes through DVC itself, so ``dvc.lock``, the cache and the run-cache end exactly as
after a plain ``dvc repro``: the graph and the stale set come from DVC's Python API, and a stage
runs as ``dvc --wait-for-lock repro --single-item <stage>``. DVC holds its lock only while it
checks and commits a stage, so such calls overlap their commands; a lock error that still gets
through is contention, so the call is repeated, and DVC never does an up-to-date stage twice.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lessonflow import retry
from lessonflow.compare import headline, read_metrics

THREADS_ENV = "LESSONFLOW_THREADS"  # read by lessonflow.runtime.make_deterministic
LOCK_CONTENTION = ("Unable to acquire lock", "is busy, it is being blocked by")
LOCK_WAIT_S = 1.0  # the first wait for DVC's lock (lessonflow.retry doubles it)
TAIL_LINES = 40
STAGE_ERROR = re.compile(r"^[\w.-]+(@[\w.-]+)? failed: ")  # the one line a stage prints when it stops (stages.stage_main)
LIVE: set[subprocess.Popen] = set()  # dvc commands running now, see call_dvc


class StageFailed(RuntimeError):
    """A stage's command (or DVC around it) failed; the message ends with the stage's own output.

    ``cause`` is the one line that says why: the stage's own error line when it printed one (then
    ``stated``: ``transcript`` has logged it already), else DVC's last error, else the message's first line.
    """

    def __init__(self, message: str, lines: list[str] | None = None):
        super().__init__(message)
        own = [line for line in lines or [] if STAGE_ERROR.match(line)]
        errors = [line.removeprefix("ERROR: ") for line in lines or [] if line.startswith("ERROR")]
        self.stated = bool(own)
        self.cause = STAGE_ERROR.sub("", own[-1]) if own else (errors or message.splitlines()[:1] or [""])[-1]


class StageTimedOut(StageFailed):
    """A stage ran past its time limit and was stopped."""


@dataclass(frozen=True)
class Plan:
    """The selected stages in an order where every stage comes after its upstream stages."""

    order: list[str]
    upstream: dict[str, set[str]]
    stale: set[str]


def lock_retry(action: Callable[[], Any], log: Callable[[str], None] = lambda _: None) -> Any:
    """Call ``action`` until DVC's repository lock lets it through: contention is waited out, never raised."""
    from dvc.lock import LockError
    from tenacity import retry_if_exception_type

    return retry.retrying(retry_if_exception_type(LockError), first=LOCK_WAIT_S, log=log)(action)


@contextmanager
def locked_repo(root: Path) -> Iterator[Any]:
    """A ``dvc.repo.Repo`` holding its repository lock, for edits DVC makes under that lock too."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        lock_retry(repo.lock.lock)
        try:
            yield repo
        finally:
            repo.lock.unlock()


def resolve_targets(targets: list[str], names: list[str], graph_upstream: dict[str, set[str]]) -> set[str]:
    """A target is a stage (``train@mnist-cnn``) or a foreach key (lesson ``mnist-cnn``, dataset ``mnist``).

    A key selects the most downstream of its stages (``evaluate@mnist-cnn``, ``prepare@mnist``);
    their upstream stages come along anyway.
    """
    chosen = set()
    for target in targets:
        if target in names:
            chosen.add(target)
            continue
        family = {name for name in names if name.partition("@")[2] == target}
        if not family:
            keys = sorted({name.partition("@")[2] for name in names if "@" in name})
            raise ValueError(f"unknown target {target!r}: give a stage ({', '.join(names)}) "
                             f"or a lesson/dataset key ({', '.join(keys)})")
        chosen |= {name for name in family if not any(name in graph_upstream[other] for other in family)}
    return chosen


def plan(root: Path, targets: list[str] | None = None) -> Plan:
    """Read the stage graph and ask DVC which of the selected stages are stale right now."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        upstream = {stage.addressing: {dep.addressing for dep in graph.successors(stage)} for stage in graph}
        names = [stage.addressing for stage in reversed(list(nx.topological_sort(graph)))]
        selected = set(names)
        if targets:
            selected = set()
            for name in resolve_targets(targets, names, upstream):
                selected |= {name} | ancestors(name, upstream)
        order = [name for name in names if name in selected]
    return Plan(order, {name: upstream[name] & selected for name in order}, stale_now(root, selected))


def stale_now(root: Path, selected: set[str]) -> set[str]:
    """The selected stages DVC finds stale: one status of the whole pipeline, since with explicit
    targets DVC re-reads dvc.yaml and dvc.lock once per target."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return set(lock_retry(repo.status)) & selected


def ancestors(name: str, upstream: dict[str, set[str]]) -> set[str]:
    """Every stage ``name`` depends on, directly or not."""
    found, todo = set(), [name]
    while todo:
        for dep in upstream[todo.pop()] - found:
            found.add(dep)
            todo.append(dep)
    return found


def stage_env(threads: int, gpu: str | None = None) -> dict[str, str]:
    """The environment of a stage: the project's Python first on PATH and a CPU-thread cap."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONUNBUFFERED": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           THREADS_ENV: str(threads), "OMP_NUM_THREADS": str(threads)}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def transcript(stage: str, logger) -> Callable[[str], None]:
    """Where a stage's output goes: its task's log, line by line, with its own error line at ERROR level."""

    def log(line: str) -> None:
        (logger.error if STAGE_ERROR.match(line) else logger.info)(line)

    return log


def dvc_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", "--wait-for-lock", *args]


def call_dvc(root: Path, args: list[str], env: dict[str, str], log: Callable[[str], None],
             deadline: float | None = None) -> tuple[int, list[str]]:
    """Run one ``dvc`` command, passing each output line to ``log`` as it comes; return code and lines.

    Past ``deadline`` (``time.monotonic()``) the command and everything it started are stopped and
    ``StageTimedOut`` is raised. While it runs it is in ``LIVE``, for ``stop_all``.
    """
    process = subprocess.Popen(dvc_command(*args), cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    LIVE.add(process)
    expired = threading.Event()

    def expire() -> None:
        if process.poll() is None:
            expired.set()
            stop_tree(process)

    timer = None
    if deadline is not None:
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
        timer.start()
    lines = []
    assert process.stdout is not None
    try:
        for raw in process.stdout:
            # A progress bar redraws itself after carriage returns: only its last state is worth a log line.
            line = raw.decode(errors="replace").rstrip().rsplit("\r", 1)[-1].rstrip()
            if line:
                lines.append(line)
                log(line)
        code = process.wait()
    finally:
        LIVE.discard(process)
        if timer is not None:
            timer.cancel()
    if expired.is_set():
        tail = "\n".join(lines[-TAIL_LINES:])
        raise StageTimedOut(f"dvc {' '.join(args)} was stopped: it ran past the stage time limit "
                            f"(orchestration.stage_timeout_minutes in params.yaml):\n{tail}")
    return code, lines


def stop_tree(process: subprocess.Popen, grace: float = 10.0) -> None:
    """Stop a command and every process under it: SIGTERM (a stage's outputs are written atomically), then SIGKILL.

    The command itself is waited for through ``process`` alone: psutil would reap it, and ``Popen``
    then reports a command that was stopped as one that succeeded (exit status 0).
    """
    import psutil

    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return
    process.terminate()
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    given_up = time.monotonic() + grace
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(grace)
    _, alive = psutil.wait_procs(children, timeout=max(0.0, given_up - time.monotonic()))
    if process.poll() is None:
        process.kill()
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def stop_all() -> None:
    """Stop every dvc command this process started that is still running (the run is being abandoned)."""
    for process in list(LIVE):
        stop_tree(process)


def dvc_until_unlocked(root: Path, args: list[str], env: dict[str, str], log: Callable[[str], None],
                       timeout: float | None = None) -> list[str]:
    """``call_dvc``, repeated while the only error is lock contention; any other error raises StageFailed.

    ``timeout`` (seconds) covers the waits for the lock too: a stage that cannot start is as stuck as one that hangs.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    code, lines = retry.until_accepted(lambda: call_dvc(root, args, env, log, deadline), _not_contention,
                                       first=LOCK_WAIT_S, log=log, why="DVC lock held by another process")
    if code:
        tail = "\n".join(lines[-TAIL_LINES:])
        raise StageFailed(f"dvc {' '.join(args)} exited with {code}:\n{tail}", lines)
    return lines


def _not_contention(result: tuple[int, list[str]]) -> bool:
    """A ``call_dvc`` result that is not another process holding DVC's lock: success, or an error of its own."""
    code, lines = result
    errors = [line for line in lines if line.startswith("ERROR")]
    return code == 0 or not errors or not all(any(text in line for text in LOCK_CONTENTION) for line in errors)


def reproduce(root: Path, stage: str, *, force: bool, env: dict[str, str], log: Callable[[str], None],
              pull: bool = False, timeout: float | None = None) -> str:
    """``dvc repro --single-item`` one stage; ``ran`` when DVC recorded a new ``dvc.lock`` entry for it, else ``skipped``.

    DVC's own record says what it did, not its console: a stage it finds up to date keeps its entry. A
    forced stage ran whatever it recorded. DVC's run-cache never restores a stage with ``persist``
    outputs (every stage here), so a new entry is a command that ran.
    """
    args = ["repro", "--single-item", *(["--force"] if force else []), *(["--pull"] if pull else []), stage]
    before = recorded_entries(root).get(stage)
    dvc_until_unlocked(root, args, env, log, timeout)
    return "ran" if force or recorded_entries(root).get(stage) != before else "skipped"


def recorded_entries(root: Path) -> dict[str, Any]:
    """Every stage's ``dvc.lock`` entry as plain data (none before a first build), read under DVC's lock: never
    half-written. libyaml's loader reads it several times faster than DVC's own."""
    import yaml

    from lessonflow.schema import SAFE_LOADER

    with locked_repo(root):
        path = root / "dvc.lock"
        return (yaml.load(path.read_text(), Loader=SAFE_LOADER) or {}).get("stages") or {} if path.is_file() else {}


def lock_entry(root: Path, stage: str) -> dict[str, Any]:
    """The stage's entry in ``dvc.lock`` as DVC wrote it."""
    return recorded_entries(root)[stage]


def merge_lock_entries(root: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Write stage entries computed in another clone into this ``dvc.lock``, under DVC's lock and with its writer."""
    from dvc.utils.serialize import modify_yaml

    with locked_repo(root):
        with modify_yaml(str(root / "dvc.lock")) as data:
            data.setdefault("schema", "2.0")
            stages = data.setdefault("stages", {})
            for name, entry in entries.items():
                if stages.get(name) != entry:
                    stages[name] = entry


def git_tracked_outputs(root: Path, stages: list[str]) -> dict[str, dict[str, bytes]]:
    """The files of the stages' ``cache: false`` outputs (metrics, curves), by output path.

    A DVC remote carries only cached outputs; these small ones travel with git, so a worker's
    clone gets them from the flow, and the flow from the worker, with the ``dvc.lock`` entries.
    """
    from dvc.repo import Repo

    with Repo(str(root)) as repo:  # by name: ``addressing`` is relative to the working directory, a worker's is not root
        by_name = {stage.name: stage for stage in repo.index.stages}
        outputs = [Path(out.fs_path) for name in stages for out in by_name[name].outs if not out.use_cache]
    return {str(out.relative_to(root)): {str(file.relative_to(out)): file.read_bytes()
                                         for file in ([out] if out.is_file() else sorted(out.rglob("*")))
                                         if file.is_file()}
            for out in outputs if out.exists()}


def write_outputs(root: Path, outputs: dict[str, dict[str, bytes]]) -> None:
    """Put outputs read by ``git_tracked_outputs`` in place in another clone, each replaced whole."""
    from lessonflow.atomic import atomic_dir, atomic_path

    for name, files in outputs.items():
        if set(files) == {"."}:
            with atomic_path(root / name) as tmp:
                tmp.write_bytes(files["."])
            continue
        with atomic_dir(root / name) as staging:
            for relative, content in files.items():
                (staging / relative).parent.mkdir(parents=True, exist_ok=True)
                (staging / relative).write_bytes(content)


def save_experiment(root: Path, stages: list[str], name: str, log: Callable[[str], None]) -> str:
    """Record the workspace as the experiment ``name``: what ``dvc exp show`` and ``lessonflow history`` list.

    A saved experiment is a git ref, not a commit on the branch: the workspace stays as the run
    left it. New git-tracked outputs (a lesson's first metrics) and a first ``dvc.lock`` go in too.
    ``stages`` are the ones the run changed: DVC hashes their outputs again, the others' are in
    ``dvc.lock`` already, so recording costs what the run changed, not the whole pipeline.
    """
    untracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard", "dvc.lock", "results", "fingerprints"],
                               cwd=root, capture_output=True, text=True, check=True).stdout.split()
    dvc_until_unlocked(root, ["exp", "save", "--force", "-n", name, *(arg for path in untracked for arg in ("-I", path)),
                              *stages], stage_env(1), log)
    return name


def headline_metrics(root: Path, stages: list[str]) -> dict[str, str]:
    """The number a reader looks for first in each stage's metrics files (test accuracy, …), or ''."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        by_name = {stage.addressing: stage for stage in repo.index.stages}  # one read of dvc.yaml for all
        files = {stage: [Path(out.fs_path) for out in by_name[stage].outs if out.metric] for stage in stages}
    return {stage: _headline(paths) for stage, paths in files.items()}


def _headline(paths: list[Path]) -> str:
    """The report's headline rule (``compare.headline``), applied to the first metrics file that has one."""
    for path in paths:
        if found := headline(_flatten(read_metrics(path))):
            return f"{found[0]} = {found[1]:.4g}"
    return ""


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def live_download_stages(root: Path, stages: list[str]) -> set[str]:
    """Download stages whose resolved source changes by itself (``DatasetSpec.live_sources``)."""
    from lessonflow.datasets import NAMES, resolve_source, spec
    from lessonflow.params import load_params

    params = load_params(root / "params.yaml")
    live = set()
    for stage in stages:
        verb, _, name = stage.partition("@")
        if verb == "download" and name in params.datasets and name in NAMES:
            source = resolve_source(params.datasets[name].source, params.profile)
            if source in spec(name).live_sources:
                live.add(stage)
    return live


def visible_gpus() -> list[str]:
    """GPU ids this machine offers: ``CUDA_VISIBLE_DEVICES`` when set, else what ``nvidia-smi`` lists."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [gpu for gpu in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if gpu.strip()]
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listed.splitlines() if line.strip()]
