"""The Prefect flow that rebuilds what changed in the DVC pipeline, independent stages side by side.

DVC decides *what* is stale and records every result; Prefect decides *when* each stale stage runs,
retries the flaky ones and shows the run. A stage is submitted once its upstream stages finished,
at most ``max_parallel`` at a time, and asked about again when an upstream stage ran (DVC's hash
check decides). A failed stage is reported at once and fails the run; stages that do not depend on
it still finish. Run it with ``lessonflow flow run`` or ``python -m flows.pipeline``.
"""

import contextvars
import functools
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prefect import flow, get_run_logger, task
from prefect.context import FlowRunContext
from prefect.futures import as_completed
from prefect.states import Failed
from prefect.task_runners import ThreadPoolTaskRunner

from flows import artifacts, checkout, crashed, dvc_stages, lifeline, notify
from flows.dvc_stages import Plan
from lessonflow import retry
from lessonflow.schema import load_orchestration

CHECK = "check"  # the first stage: validates params.yaml and writes the code fingerprints

DOWNLOAD_RETRIES = 3
DOWNLOAD_BACKOFF_S = 10.0
WORKER_ROOT_ENV = "LESSONFLOW_WORKER_ROOT"  # a worker's own clone, when it does not share the flow's folder
ORPHANED_EXIT = 70
CRASH_REPORT_S = 20


class PipelineFailed(RuntimeError):
    """At least one stage failed; the message gives each failed stage's one-line cause.

    Each failed stage was reported (``flows.notify``) when it failed, with its last log lines.
    """

    def __init__(self, failed: list["StageRun"]):
        super().__init__("\n".join(f"{result.stage} failed: {result.cause}" for result in failed))
        self.failures = {result.stage: result.error for result in failed}


@dataclass(frozen=True)
class RunOptions:
    """What one run was asked to do: the flow's parameters and the stage time limit, read once."""

    project: Path
    targets: tuple[str, ...] = ()
    profile: str | None = None
    force: bool = False
    max_parallel: int = 2
    refresh_sources: bool = False
    remote: bool = False
    push: bool = False
    record: bool = True
    timeout_s: float | None = None
    seed_workers: int = 1


@dataclass(repr=False)
class StageRun:
    """How one stage ended in this run: ran (DVC recorded a new entry for it), skipped, failed or blocked.

    Its repr is short: Prefect logs the repr of a failed task's result, and the error is in the log already.
    """

    stage: str
    status: str
    started: float = 0.0
    finished: float = 0.0
    metric: str = ""
    error: str = ""
    cause: str = ""  # the one line that says why it failed
    lock_entry: dict | None = None  # set when the stage ran in a worker's own clone
    tracked_outputs: dict | None = None  # and its git-tracked outputs (dvc_stages.git_tracked_outputs)

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    @property
    def changed(self) -> bool:
        return self.status == "ran"

    def __repr__(self) -> str:
        return f"StageRun({self.stage}: {self.status})"


@task(name="dvc-stage", task_run_name="{stage}")
def run_stage(stage: str, root: str, force: bool, max_parallel: int, gpu: str | None = None,
              upstream_entries: dict | None = None, upstream_outputs: dict | None = None,
              timeout_s: float | None = None) -> StageRun:
    """Reproduce one stage through DVC, with its output in this task's log.

    ``upstream_entries`` (the upstream stages' ``dvc.lock`` entries) and ``upstream_outputs``
    (their git-tracked outputs) are given when outputs travel through a DVC remote: the stage
    then runs in the worker's own clone, pulls what it needs, pushes what it made and returns
    its own ``dvc.lock`` entry and git-tracked outputs for the flow to record. A stage still
    running after ``timeout_s`` is stopped and fails (``dvc_stages.StageTimedOut``).

    A failed stage ends the task Failed with its ``StageRun`` as data, not with an exception: its
    cause goes into the log once, as one line, instead of inside the engine's tracebacks.
    """
    logger = get_run_logger()
    workdir = Path(os.environ.get(WORKER_ROOT_ENV) or root)
    threads = int(os.environ.get(dvc_stages.THREADS_ENV) or 0) or max(1, (os.cpu_count() or 1) // max_parallel)
    env = dvc_stages.stage_env(threads, gpu)
    logger.info("%s in %s with %d CPU thread(s)%s", stage, workdir, threads, f", GPU {gpu}" if gpu else "")
    remote = upstream_entries is not None
    if remote:
        dvc_stages.merge_lock_entries(workdir, upstream_entries)
        dvc_stages.write_outputs(workdir, upstream_outputs or {})
    started = time.time()
    log = dvc_stages.transcript(stage, logger)
    try:
        status = dvc_stages.reproduce(workdir, stage, force=force, env=env, log=log, pull=remote, timeout=timeout_s)
        if remote:
            dvc_stages.dvc_until_unlocked(workdir, ["push", stage], env, log)
    except dvc_stages.StageFailed as err:
        if not err.stated:
            logger.error("%s failed: %s", stage, err.cause)
        return Failed(message=f"{stage} failed", data=StageRun(stage, "failed", started, time.time(),
                                                               error=str(err), cause=err.cause))
    finished = time.time()
    if not remote:
        return StageRun(stage, status, started, finished)
    return StageRun(stage, status, started, finished, lock_entry=dvc_stages.lock_entry(workdir, stage),
                    tracked_outputs=dvc_stages.git_tracked_outputs(workdir, [stage]))


def _stage_task(stage: str):
    """Downloads meet flaky networks: they alone are retried, with the project's back-off (``lessonflow.retry``)."""
    if stage.startswith("download@"):
        return run_stage.with_options(retries=DOWNLOAD_RETRIES,
                                      retry_delay_seconds=retry.delays(DOWNLOAD_BACKOFF_S, DOWNLOAD_RETRIES))
    return run_stage


def _report_failure(flow, flow_run, state) -> None:
    """Hook of a failed run: a failure that no failed stage explains (bad params, a bug) to the team's channel.

    Failed stages were reported the moment each failed (``_execute``), before anything was recorded.
    """
    error = state.result(raise_on_failure=False)
    if not isinstance(error, PipelineFailed):
        notify.report_run(flow_run, state.name, {}, notify.tail(str(error or state.message)))


def _report_crash(flow, flow_run, state) -> None:
    notify.report_run(flow_run, "Crashed", {}, state.message or "the run's process ended unexpectedly")


@flow(name="lessonflow", log_prints=True, on_failure=[_report_failure], on_crashed=[_report_crash])
def pipeline(targets: list[str] | None = None, profile: Literal["embedded", "full"] | None = None,
             force: bool = False, max_parallel: int = 2, refresh_sources: bool = False,
             remote: bool = False, push: bool = False, record: bool = True, root: str = ".") -> list[StageRun]:
    """Bring the selected stages (all by default) up to date, as ``dvc repro`` would.

    targets: stages (``train@mnist-cnn``) or lesson/dataset keys (``mnist-cnn``); upstream comes along.
    profile: set ``profile`` in params.yaml first (like ``dvc exp run -S profile=…``).
    force: rerun every selected stage. refresh_sources: rerun the downloads of sources that change
    by themselves (the schedule sets it); downstream stages rerun only if the data changed.
    max_parallel: stages running at once. remote: share outputs through the project's default DVC
    remote, for workers that have their own clone of the project (see docs/orchestration.md).
    push: ``dvc push`` what the run built to the default remote. record: a run that changed any
    result ends as a saved DVC experiment (``dvc exp show``, ``lessonflow history``).

    The run holds the checkout for its whole length (``flows.checkout``): another run, of any
    deployment or by hand, waits for it. A failed or crashed run is reported (``flows.notify``).
    """
    logger = get_run_logger()
    if max_parallel < 1:
        raise ValueError(f"max_parallel must be at least 1 (got {max_parallel})")
    project = Path(root).resolve()
    settings = load_orchestration(project / "params.yaml")
    with checkout.hold(project, _run_name(), logger.info):
        lifeline.watch(functools.partial(_abandon, logger, FlowRunContext.get().flow_run.id))
        return _pipeline(RunOptions(project, tuple(targets or ()), profile, force, max_parallel, refresh_sources,
                                    remote, push, record, settings.stage_timeout_minutes * 60, settings.seed_workers))


def _pipeline(options: RunOptions) -> list[StageRun]:
    logger = get_run_logger()
    project = options.project
    if options.profile is not None:
        _set_profile(project, options.profile, logger)
    plan = dvc_stages.plan(project, list(options.targets) or None)
    forced = set(plan.order) if options.force else set()
    if options.refresh_sources:
        forced |= dvc_stages.live_download_stages(project, plan.order)
    logger.info("%d stage(s) selected, %d stale%s", len(plan.order), len(plan.stale),
                f", forced: {', '.join(sorted(forced))}" if forced else "")
    results = _execute(plan, forced, options)
    artifacts.stage_summary(project, results)
    artifacts.results_table(project, results)
    built = [result.stage for result in results if result.status not in ("failed", "blocked")]
    changed = [result.stage for result in results if result.changed]
    failed = [result for result in results if result.status == "failed"]
    if options.record and changed and not failed:  # a failed run's workspace holds what broke it: not a result to keep
        logger.info("recorded as experiment %s", dvc_stages.save_experiment(project, changed, _run_name(), logger.info))
    elif options.record and failed:
        logger.info("not recorded as an experiment: %d stage(s) failed", len(failed))
    if options.push and built:
        dvc_stages.dvc_until_unlocked(project, ["push", *built], dvc_stages.stage_env(1), logger.info)
    if failed:
        error = PipelineFailed(failed)
        return Failed(message=str(error), data=error)
    return results


def _execute(plan: Plan, forced: set[str], options: RunOptions) -> list[StageRun]:
    """Submit each stage once its upstream stages are done, at most ``max_parallel`` at a time."""
    project, max_parallel, remote = options.project, options.max_parallel, options.remote
    results: dict[str, StageRun] = {}
    running: dict = {}
    waiting = list(plan.order)
    slots = list(range(max_parallel))
    needs = _slots_needed(project, plan.order, options.seed_workers, max_parallel)
    gpus = _local_gpus()
    while waiting or running:
        for stage in list(waiting):
            upstream = [results.get(name) for name in plan.upstream[stage]]
            if broken := [result for result in upstream if result and result.status in ("failed", "blocked")]:
                cause = broken[0].cause if broken[0].status == "blocked" else f"{broken[0].stage} failed"
                results[stage] = StageRun(stage, "blocked", error="an upstream stage failed", cause=cause)
            elif None in upstream:
                continue
            elif not (stage in forced or stage in plan.stale
                      or any(results[name].changed for name in plan.upstream[stage] if name != CHECK)):
                results[stage] = StageRun(stage, "skipped")
            elif len(slots) >= needs[stage]:
                taken, slots = slots[:needs[stage]], slots[needs[stage]:]
                entries = outputs = None
                if remote:
                    ancestors = dvc_stages.ancestors(stage, plan.upstream)
                    recorded = dvc_stages.recorded_entries(project)
                    entries = {name: recorded[name] for name in ancestors}
                    outputs = dvc_stages.git_tracked_outputs(project, list(ancestors))
                gpu = ",".join(dict.fromkeys(gpus[slot % len(gpus)] for slot in taken)) if gpus else None
                future = _stage_task(stage).submit(stage, str(project), stage in forced, max_parallel, gpu, entries,
                                                   outputs, options.timeout_s)
                running[future] = (stage, taken, time.time())
            else:
                continue
            waiting.remove(stage)
        if running:
            future = next(as_completed(list(running)))
            stage, taken, submitted = running.pop(future)
            slots += taken
            results[stage] = _outcome(future, stage, submitted, project, remote)
            if stage == CHECK and results[stage].changed:
                # check rewrote the code fingerprints every stage depends on; DVC now knows which changed,
                # so only those stages run, not all of check's downstream
                plan.stale.update(dvc_stages.stale_now(project, set(plan.order)))
            if results[stage].status == "failed":  # at once: the run may go on for hours with other stages
                notify.report_run(FlowRunContext.get().flow_run, "Failed", {stage: results[stage].error},
                                  f"{stage} failed: {results[stage].cause}\n"
                                  "Stages that do not depend on it go on; the run will end failed.")
        elif waiting:
            raise RuntimeError(f"stages wait on stages outside the plan: {waiting}")  # a bug, not a user error
    return [results[stage] for stage in plan.order]


def _slots_needed(project: Path, stages: list[str], seed_workers: int, max_parallel: int) -> dict[str, int]:
    """Slots a train stage holds while its seeds train side by side (``orchestration.seed_workers``): one per
    worker, each seed computing with one slot's share of the cores and GPUs, as it would in turn."""
    from lessonflow.schema import read_params

    lessons = read_params(project / "params.yaml").get("lessons") or {}
    needs = {}
    for stage in stages:
        verb, _, lesson = stage.partition("@")
        seeds = (lessons.get(lesson) or {}).get("seeds", 1) if verb == "train" else 1
        count = len(seeds) if isinstance(seeds, list) else seeds if isinstance(seeds, int) else 1  # bad: check says so
        needs[stage] = max(1, min(seed_workers, max_parallel, count))
    return needs


def _outcome(future, stage: str, submitted: float, project: Path, remote: bool) -> StageRun:
    try:
        result = future.result(raise_on_failure=False)  # a failed stage's StageRun, or what a bug raised
    except Exception as err:
        result = err
    if not isinstance(result, StageRun):  # a failure around the stage (a bug, a lost Dask worker): recorded, not raised yet
        error = str(result) or repr(result)
        return StageRun(stage, "failed", submitted, time.time(), error=error, cause=error.splitlines()[0])
    if result.status == "failed":
        return result  # the stage's own failure, its cause already in its task log
    if remote and result.lock_entry is not None:
        # The stage ran in a worker's clone: record its entry here and fetch its outputs.
        dvc_stages.merge_lock_entries(project, {stage: result.lock_entry})
        dvc_stages.write_outputs(project, result.tracked_outputs or {})
        dvc_stages.dvc_until_unlocked(project, ["pull", stage], dvc_stages.stage_env(1), get_run_logger().info)
    return result


def _run_name() -> str:
    """The deployment's name (``flow-run`` for a run by hand) and the UTC time: an experiment name."""
    from prefect.runtime import deployment

    return f"{deployment.name or 'flow-run'}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"


def _abandon(logger, flow_run_id) -> None:
    """The serving process died (``flows.lifeline``): stop the stages, record the crash if the server still answers, exit.

    With the schedule's own server gone too, the next ``lessonflow schedule`` records the crash instead.
    """
    from prefect.client.orchestration import get_client

    reason = "the serving process (lessonflow schedule) died during the run; its stages were stopped"
    logger.error(reason)
    dvc_stages.stop_all()

    def record() -> None:
        with get_client(sync_client=True) as client:
            crashed.record(client, flow_run_id, reason)

    recorder = threading.Thread(target=contextvars.copy_context().run, args=(record,), daemon=True)
    recorder.start()
    recorder.join(CRASH_REPORT_S)
    os._exit(ORPHANED_EXIT)


def _local_gpus() -> list[str]:
    """GPUs to share out between concurrent stages; only when the stages run on this machine."""
    context = FlowRunContext.get()
    if context is None or not isinstance(context.task_runner, ThreadPoolTaskRunner):
        return []  # e.g. Dask: each worker already sees its own GPU(s)
    return dvc_stages.visible_gpus()


def _set_profile(project: Path, profile: str, logger) -> None:
    """``profile`` in params.yaml, and dvc.yaml written for it (the transfer lessons' inputs differ by profile)."""
    from dvc.utils.serialize import modify_yaml

    from lessonflow import dvcfile
    from lessonflow.params import load_params
    from lessonflow.paths import Layout

    with modify_yaml(str(project / "params.yaml")) as params:
        if params.get("profile") != profile:
            logger.info("params.yaml: profile %s -> %s", params.get("profile"), profile)
            params["profile"] = profile
    layout = Layout(project)
    resolved = load_params(layout.params)
    if dvcfile.stale(layout, resolved):
        dvcfile.write(layout, resolved)


def task_runner(runner: str = "thread", max_parallel: int = 2, address: str | None = None):
    """The Prefect task runner for ``--runner``: threads on this machine, or a Dask cluster."""
    if runner == "thread":
        return ThreadPoolTaskRunner(max_workers=max_parallel)
    if runner == "dask":
        from prefect_dask import DaskTaskRunner

        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": max_parallel, "threads_per_worker": 1, "processes": True})
    raise ValueError(f"runner: unknown runner {runner!r}; allowed: thread, dask")


if __name__ == "__main__":
    pipeline()
