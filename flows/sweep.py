"""A grid of params values run as DVC experiments, N at a time, each in its own clone of the checkout.

``dvc queue start -j N`` runs experiments in workspaces of *one* repository, where above ``-j 1``
they collide on its locks and refs (DVC issues 8417, 8763, 10673). Here the grid is parsed as
``dvc exp run -S`` parses it and validated first; each experiment is one Prefect task in a clone made
under the checkout's lock (``flows.checkout``), sharing the checkout's DVC cache; its experiment ref
is fetched back into the checkout, so ``dvc exp show`` and ``lessonflow history`` see it, and the
clone is deleted. The checkout's workspace is never touched. Run it with ``lessonflow sweep``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.context import FlowRunContext
from prefect.futures import wait

from flows import checkout, dvc_stages

REPORT_KEY = "lessonflow-sweep"
CLONE_PREFIX = "lessonflow-sweep-"  # each experiment's clone: a folder of the temporary directory ($TMPDIR)
FORCE_ADD = "++"  # Hydra: set the key whether or not params.yaml has it yet (the schema may allow it)
_fetching = threading.Lock()  # one `git fetch` into the checkout at a time


class SweepFailed(RuntimeError):
    """At least one experiment failed; the message carries each failed experiment's own error."""


class ExperimentFailed(RuntimeError):
    """One experiment failed after ``seconds``; the message is its own error."""

    def __init__(self, message: str, seconds: float):
        super().__init__(message)
        self.seconds = seconds


@dataclass
class Experiment:
    """One combination of the grid and how its experiment ended: done or failed."""

    name: str
    overrides: list[str]
    status: str = "pending"
    seconds: float = 0.0
    rev: str = ""  # the experiment's commit
    results: set[str] = field(default_factory=set)  # lessons and ensembles it set or rebuilt (``compare.result_id``)
    headline: str = ""  # their headline metrics against HEAD, as ``lessonflow compare`` shows them
    error: str = ""

    @property
    def label(self) -> str:
        return _label(self.overrides)


def _label(overrides: list[str]) -> str:
    return " ".join(override.lstrip("+") for override in overrides)


def grid(assignments: list[str]) -> list[list[str]]:
    """Each combination of ``KEY=V1,V2,…`` assignments as ``dvc exp run -S`` overrides, parsed as DVC does."""
    from dvc.utils.hydra import get_hydra_sweeps
    from hydra.errors import HydraException

    if not assignments:
        raise ValueError("give at least one KEY=V1,V2,… assignment")
    forced = [text if text.startswith(("+", "~")) else FORCE_ADD + text for text in assignments]
    try:
        return [combination["params.yaml"] for combination in get_hydra_sweeps({"params.yaml": forced})]
    except HydraException as err:
        raise ValueError(f"not a KEY=V1,V2,… assignment: {err}") from None


def check(root: Path, combinations: list[list[str]]) -> None:
    """Apply every combination to a copy of params.yaml and validate it; raise ParamsError on the first problem."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides

    from lessonflow.errors import ParamsError
    from lessonflow.params import load_params, parse_params, read_params

    keys = _keys(combinations[0])
    named = {section: [key[1] for key in keys if key[0] == section and len(key) > 1]
             for section in ("lessons", "datasets")}
    parse_params(read_params(root / "params.yaml"), **named)  # a lesson or dataset that is not there is a typo
    with tempfile.TemporaryDirectory(prefix=CLONE_PREFIX) as scratch:
        copy = Path(scratch) / "params.yaml"
        for overrides in combinations:
            shutil.copyfile(root / "params.yaml", copy)
            label = _label(overrides)
            try:
                apply_overrides(copy, overrides)
                load_params(copy)
            except InvalidArgumentError as err:
                raise ParamsError(f"{label}: {err}: {err.__cause__}") from None
            except ParamsError as err:
                raise ParamsError(f"{label}: {err}") from None


def target_stages(root: Path, targets: list[str] | None) -> list[str]:
    """The stages ``dvc exp run`` is given: the most downstream of the selected ones (none: the whole pipeline)."""
    if not targets:
        return []
    selected = dvc_stages.plan(root, targets)
    order = selected.order
    return [stage for stage in order if not any(stage in selected.upstream[other] for other in order)]


@task(name="dvc-experiment", task_run_name="{name}")
def run_experiment(root: str, name: str, overrides: list[str], stages: list[str], threads: int) -> Experiment:
    """Run one experiment in a clone of its own and bring its ref back to the checkout at ``root``."""
    logger = get_run_logger()
    project = Path(root)
    clone = Path(tempfile.mkdtemp(prefix=f"{CLONE_PREFIX}{name}-"))
    started = time.time()
    try:
        with checkout.hold(project, f"{name} (cloning the checkout)", logger.info):  # not while a run rewrites it
            _clone(project, clone)
        logger.info("%s: %s in %s with %d CPU thread(s)", name, _label(overrides), clone, threads)
        env = dvc_stages.stage_env(threads)
        restore = ["checkout", "--allow-missing", *(["--with-deps", *stages] if stages else [])]
        dvc_stages.dvc_until_unlocked(clone, restore, env, logger.info)
        args = ["exp", "run", "-n", name, *(arg for override in overrides for arg in ("-S", override)), *stages]
        before = dvc_stages.recorded_entries(clone)
        dvc_stages.dvc_until_unlocked(clone, args, env, logger.info)
        rebuilt = [stage for stage, entry in dvc_stages.recorded_entries(clone).items() if before.get(stage) != entry]
        rev = _bring_back(project, clone, name)
        logger.info("%s recorded in %s (dvc exp show); %s deleted", name, project, clone)
    except Exception as err:
        raise ExperimentFailed(str(err) or repr(err), time.time() - started) from err
    finally:
        shutil.rmtree(clone, ignore_errors=True)
    results = {stage.partition("@")[2] or stage for stage in rebuilt} | _named_results(overrides)
    return Experiment(name, overrides, "done", time.time() - started, rev, results)


def _named_results(overrides: list[str]) -> set[str]:
    """The lessons (``lessons.<id>.…``) and ensembles (``ensembles.<name>.…``) the overrides set."""
    return {{"lessons": key[1], "ensembles": f"ensemble-{key[1]}"}[key[0]]
            for key in _keys(overrides) if len(key) > 1 and key[0] in ("lessons", "ensembles")}


def _keys(overrides: list[str]) -> list[list[str]]:
    """``++lessons.a.lr=0.1`` → ``["lessons", "a", "lr"]``."""
    return [override.lstrip("+~").split("=", 1)[0].split(".") for override in overrides]


def _git(cwd: Path, *args: str, stdin: bytes | None = None) -> bytes:
    result = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True)
    if result.returncode:
        raise RuntimeError(f"git {' '.join(args)} exited with {result.returncode}: {result.stderr.decode().strip()}")
    return result.stdout


def _clone(project: Path, clone: Path) -> None:
    """The checkout's HEAD and uncommitted changes to tracked files, sharing its DVC cache."""
    from dvc.repo import Repo

    head = _git(project, "rev-parse", "HEAD").decode().strip()
    _git(clone.parent, "clone", "-q", "--no-checkout", str(project), str(clone))
    _git(clone, "checkout", "-q", "--detach", head)
    changes = _git(project, "diff", "--binary", "HEAD")
    if changes:
        _git(clone, "apply", "--binary", "-", stdin=changes)
    with Repo(str(project)) as repo:
        cache = repo.cache.local_cache_dir
    with Repo(str(clone)) as repo, repo.config.edit("local") as local:  # as `dvc cache dir --local` writes it
        local["cache"]["dir"] = cache


def _bring_back(project: Path, clone: Path, name: str) -> str:
    """Fetch the experiment's ref (``refs/exps/<sha[:2]>/<sha[2:]>/<name>``, not DVC's ``exec`` refs)."""
    refs = _git(clone, "for-each-ref", "--format=%(refname)", "refs/exps").decode().split()
    (ref,) = [ref for ref in refs if ref.endswith(f"/{name}") and not ref.startswith("refs/exps/exec/")]
    with _fetching:
        _git(project, "fetch", "-q", "--no-write-fetch-head", str(clone), f"{ref}:{ref}")
    return _git(project, "rev-parse", ref).decode().strip()


@flow(name="lessonflow-sweep", log_prints=True)
def sweep(assignments: list[str], jobs: int = 2, targets: list[str] | None = None,
          root: str = ".") -> list[Experiment]:
    """Run every combination of ``KEY=V1,V2,…`` assignments as a DVC experiment, ``jobs`` at a time.

    The flow's task runner holds ``jobs`` threads (``lessonflow sweep -j``), so every experiment is
    submitted at once and Prefect starts the next as one ends.

    targets: stages or lesson/dataset keys, as for ``lessonflow flow run`` (default: the whole pipeline).
    Each experiment gets ``LESSONFLOW_THREADS`` = cores / ``jobs`` (at least 1) unless that is set.
    """
    logger = get_run_logger()
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1 (got {jobs})")
    project = Path(root).resolve()
    combinations = grid(assignments)
    check(project, combinations)
    stages = target_stages(project, targets)
    threads = int(os.environ.get(dvc_stages.THREADS_ENV) or 0) or max(1, (os.cpu_count() or 1) // jobs)
    # The run's id too: two sweeps started within a second of each other would otherwise name their
    # experiments alike, and the second could not bring its refs back.
    stamp = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{FlowRunContext.get().flow_run.id.hex[:4]}"
    waiting = [Experiment(f"sweep-{stamp}-{number}", overrides) for number, overrides in enumerate(combinations, 1)]
    logger.info("%d experiment(s), %d at a time, of %s", len(waiting), jobs, " ".join(stages) or "the whole pipeline")
    experiments = _execute(waiting, project, stages, threads)
    _report(project, experiments)
    failed = [experiment for experiment in experiments if experiment.status == "failed"]
    if failed:
        raise SweepFailed("\n\n".join(f"{e.name} ({e.label}) failed:\n{e.error}" for e in failed))
    return experiments


def _execute(experiments: list[Experiment], project: Path, stages: list[str], threads: int) -> list[Experiment]:
    """Submit every experiment and record how each ended; the flow's task runner runs ``jobs`` at a time."""
    futures = [run_experiment.submit(str(project), experiment.name, experiment.overrides, stages, threads)
               for experiment in experiments]
    wait(futures)
    for experiment, future in zip(experiments, futures):
        try:
            result = future.result()
        except ExperimentFailed as err:  # already in its task log: recorded, not raised yet
            experiment.status, experiment.error, experiment.seconds = "failed", str(err), err.seconds
        else:
            experiment.status, experiment.seconds, experiment.rev, experiment.results = \
                result.status, result.seconds, result.rev, result.results
    return experiments


def _headline(project: Path, experiment: Experiment) -> str:
    """``lesson: metric value, change …`` for each lesson or ensemble the experiment set or rebuilt."""
    from dvc.exceptions import DvcException
    from scmrepo.exceptions import SCMError

    from lessonflow.compare import compare, rows

    try:
        comparison = compare("HEAD", experiment.rev, project)
    except (DvcException, SCMError) as err:
        return f"(metrics not read: {err})"
    return "; ".join(f"{lesson}: {metric} {new}, change {change}"
                     for lesson, metric, _, new, change, *_ in rows(comparison) if lesson in experiment.results)


def _report(project: Path, experiments: list[Experiment]) -> None:
    """The sweep's summary as a Prefect artifact: each combination, its experiment, how long, its headline metrics."""
    rows = ["| experiment | params | result | seconds | headline metric (change from HEAD) |", "|---|---|---|---:|---|"]
    for experiment in experiments:
        if experiment.rev:
            experiment.headline = _headline(project, experiment)
        note = experiment.headline or (experiment.error.strip().splitlines() or [""])[-1][:200]
        rows.append(f"| `{experiment.name}` | `{experiment.label}` | {experiment.status} "
                    f"| {experiment.seconds:.1f} | {note} |")
    done = sum(experiment.status == "done" for experiment in experiments)
    summary = f"{done} of {len(experiments)} experiment(s) done"
    create_markdown_artifact(markdown=f"# lessonflow sweep in `{project}`\n\n{summary}; see `dvc exp show`\n\n"
                             + "\n".join(rows), key=REPORT_KEY, description=summary)
    get_run_logger().info("%s\n%s", summary, "\n".join(rows))
