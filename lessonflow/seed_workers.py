"""A lesson's seeds trained side by side, each in a worker process (``orchestration.seed_workers``).

Seeds are independent runs, so spare cores or GPUs need not wait for each other; they stay in the
lesson's one train stage (one lock entry). Workers are spawned, not forked: forking a process whose
torch has started thread pools or CUDA is unsafe. A seed computes with the stage's CPU thread count in
a worker too, since torch's CPU results depend on it; with several GPUs each seed gets one in turn.
The first failure stops the others, named by its seed; their checkpoints are resumed next time.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

import torch

from lessonflow.runtime import THREADS_ENV

POLL_S = 2.0  # how often the stage looks for a worker that died without reporting (killed, out of memory)


class SeedFailed(Exception):
    """One seed's training failed: ``error`` is what it raised, ``details`` its worker's traceback."""

    def __init__(self, seed: int, error: BaseException, details: str = ""):
        super().__init__(seed, error, details)
        self.seed, self.error, self.details = seed, error, details


def devices(device: torch.device, count: int) -> list[torch.device]:
    """The device of each of ``count`` seeds: the GPUs in turn when there are several, else ``device`` for all."""
    gpus = torch.cuda.device_count() if device.type == "cuda" and device.index is None else 0
    return [torch.device("cuda", index % gpus) for index in range(count)] if gpus > 1 else [device] * count


def side_by_side(work: Callable[[int, torch.device], Any], seeds: list[int], workers: int,
                 device: torch.device) -> dict[int, Any]:
    """``work(seed, device)`` for every seed, ``workers`` processes at a time; results by seed, in the seeds' order."""
    context = torch.multiprocessing.get_context("spawn")
    reports = context.Queue()
    jobs = list(zip(seeds, devices(device, len(seeds))))
    processes = {context.Process(target=_work_through, args=(work, jobs[index::workers], torch.get_num_threads(), reports),
                                 daemon=True): [seed for seed, _ in jobs[index::workers]] for index in range(workers)}
    results: dict[int, Any] = {}
    try:
        for process in processes:
            process.start()
        while len(results) < len(seeds):
            seed, outcome = _next_report(reports, processes, results)
            if isinstance(outcome, SeedFailed):
                raise outcome
            results[seed] = pickle.loads(outcome)
    finally:
        for process in processes:  # after a failure, the others stop: their checkpoints stay for a rerun
            process.terminate()
            process.join()
    return {seed: results[seed] for seed in seeds}


def _next_report(reports, processes: dict, results: dict) -> tuple[int, Any]:
    """The next seed a worker finished, or a SeedFailed for the first seed of a worker that died without a word."""
    while True:
        try:
            return reports.get(timeout=POLL_S)
        except queue.Empty:
            for process, assigned in processes.items():
                owed = [seed for seed in assigned if seed not in results]
                if owed and process.exitcode is not None:
                    try:  # it may have reported just before it ended
                        return reports.get(timeout=POLL_S)
                    except queue.Empty:
                        error = RuntimeError(f"its worker process ended (exit status {process.exitcode}) before it finished")
                        return owed[0], SeedFailed(owed[0], error)


def _work_through(work: Callable, jobs: list[tuple[int, torch.device]], threads: int, reports) -> None:
    """A worker: the stage's thread count, then its seeds one after the other, each reported as it ends."""
    if sys.platform == "linux":  # a stage killed outright takes its workers with it, as it would its own training
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    os.environ[THREADS_ENV] = str(threads)  # runtime.make_deterministic applies it for every seed
    torch.set_num_threads(threads)
    for seed, device in jobs:
        try:
            outcome = pickle.dumps(work(seed, device))  # plain pickling: no tensor's memory shared between processes
        except Exception as error:  # noqa: BLE001 - reported to the stage, which fails naming the seed
            reports.put((seed, SeedFailed(seed, _picklable(error), traceback.format_exc())))
            return
        reports.put((seed, outcome))


def _picklable(error: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - an exception that cannot travel travels as its text
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error
