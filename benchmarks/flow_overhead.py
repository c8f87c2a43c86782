"""What the Prefect flow costs and what it buys, against plain ``dvc repro``.

Overhead: a no-op ``lessonflow flow run`` against ``dvc repro``, both as a user types them, the flow
talking to a running Prefect server. Speed-up: two independent lessons retrained (a new seed each
time, so no cache helps) by the flow two at a time against ``dvc repro`` one after the other, each
stage on one CPU thread. Runs in a temporary copy of the project (embedded data); prints medians.
Usage: python benchmarks/flow_overhead.py [--lessons mnist-mlp mnist-cnn] [--noop-runs 5] [--train-runs 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import BIN, commit_all, copy_project, dvc, project_env, run  # noqa: E402


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def set_seeds(repo: Path, lessons: list[str], seed: int) -> None:
    from dvc.utils.serialize import modify_yaml

    with modify_yaml(str(repo / "params.yaml")) as params:
        for lesson in lessons:
            params["lessons"][lesson]["seed"] = seed


def machine() -> str:
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPU cores "
            f"({platform.processor() or platform.machine()}), load average {load}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lessons", nargs=2, default=["mnist-mlp", "mnist-cnn"])
    parser.add_argument("--noop-runs", type=int, default=5)
    parser.add_argument("--train-runs", type=int, default=3)
    args = parser.parse_args()

    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    targets = [f"evaluate@{lesson}" for lesson in args.lessons]
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=300):
        repo = copy_project(Path(tmp) / "project")
        env = project_env(PREFECT_API_URL=PREFECT_API_URL.value(), LESSONFLOW_THREADS="1")
        flow = [str(BIN / "lessonflow"), "flow", "run", *args.lessons, "--max-parallel", "2"]
        repro = [str(BIN / "dvc"), "repro", *targets]
        dvc(repo, "repro", *targets, env=env)
        commit_all(repo, "built")
        print(f"machine: {machine()}", flush=True)

        noop_dvc = [timed(lambda: run(repo, *repro, env=env)) for _ in range(args.noop_runs)]
        noop_flow = [timed(lambda: run(repo, *flow, env=env)) for _ in range(args.noop_runs)]
        print(f"no-op, median of {args.noop_runs}: dvc repro {statistics.median(noop_dvc):.2f} s, "
              f"lessonflow flow run {statistics.median(noop_flow):.2f} s "
              f"(all: dvc {[round(t, 2) for t in noop_dvc]}, flow {[round(t, 2) for t in noop_flow]})", flush=True)

        sequential, concurrent = [], []
        for attempt in range(args.train_runs):
            set_seeds(repo, args.lessons, 1000 + 2 * attempt)
            sequential.append(timed(lambda: run(repo, *repro, env=env)))
            set_seeds(repo, args.lessons, 1001 + 2 * attempt)
            concurrent.append(timed(lambda: run(repo, *flow, env=env)))
        seq, par = statistics.median(sequential), statistics.median(concurrent)
        print(f"two lessons ({', '.join(args.lessons)}; train+evaluate, 1 thread each), median of {args.train_runs}: "
              f"dvc repro sequential {seq:.1f} s, flow 2 at a time {par:.1f} s, speed-up {seq / par:.2f}x "
              f"(all: sequential {[round(t, 1) for t in sequential]}, flow {[round(t, 1) for t in concurrent]})")
        print(f"machine after: {machine()}")


if __name__ == "__main__":
    main()
