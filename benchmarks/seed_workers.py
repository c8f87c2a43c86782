"""A lesson's seeds in turn against side by side (``orchestration.seed_workers``), as a user types it.

In a temporary copy of the project (embedded data), ``dvc repro -f -s train@<lesson>`` of a lesson with
three seeds, alternately with ``seed_workers: 1`` and ``2``, every seed on ``--threads`` CPU threads
(``LESSONFLOW_THREADS``, the same on both sides: the models must be byte-identical, and are checked).
Prints each run's seconds, the medians and serial ÷ side by side.
Usage: python benchmarks/seed_workers.py [--lesson mnist-cnn-book] [--runs 2] [--threads 1] [--epochs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import copy_project, dvc, project_env  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lesson", default="mnist-cnn-book")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, help="the lesson's epochs (default: its own)")
    args = parser.parse_args()
    from dvc.utils.serialize import modify_yaml

    env = project_env(LESSONFLOW_THREADS=str(args.threads))
    with tempfile.TemporaryDirectory(prefix="lessonflow-seeds-") as folder:
        repo = copy_project(Path(folder) / "project")
        with modify_yaml(str(repo / "params.yaml")) as params:
            params["lessons"][args.lesson]["seeds"] = 3
            if args.epochs:
                params["lessons"][args.lesson]["epochs"] = args.epochs
        dvc(repo, "repro", f"train@{args.lesson}", env=env)  # data prepared, the warm server started
        times: dict[int, list[float]] = {1: [], 2: []}
        models: dict[int, dict[str, bytes]] = {}
        for _ in range(args.runs):
            for workers in (1, 2):
                with modify_yaml(str(repo / "params.yaml")) as params:
                    params["orchestration"]["seed_workers"] = workers
                start = time.perf_counter()
                dvc(repo, "repro", "-f", "-s", f"train@{args.lesson}", env=env)
                times[workers].append(time.perf_counter() - start)
                folder_ = repo / "models" / args.lesson
                models[workers] = {str(p.relative_to(folder_)): p.read_bytes() for p in sorted(folder_.rglob("*.pt"))}
                print(f"seed_workers {workers}: {times[workers][-1]:.1f} s", flush=True)
        assert models[1] == models[2] and len(models[1]) == 3, "side by side trained other models"
    serial, parallel = (statistics.median(times[workers]) for workers in (1, 2))
    print(f"{args.lesson}, 3 seeds, {args.epochs or 'its'} epochs, {args.threads} thread(s) per seed, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f}: serial {serial:.1f} s, 2 workers {parallel:.1f} s (medians of {args.runs}); "
          f"serial / side by side = {serial / parallel:.2f}; the three models byte-identical")


if __name__ == "__main__":
    main()
