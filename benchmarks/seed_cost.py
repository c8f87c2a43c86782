"""What three seeds of every MNIST and CIFAR classifier cost the default build, against one seed before seeds.

Issue 28's goal: on the embedded profile, at most 60 s more than the last commit before seeds
(``--baseline``, 17019ac). Each run makes a fresh copy of a side (that commit's tree, or this
checkout's), builds ``prepare@mnist prepare@cifar`` untimed, then times
``dvc repro evaluate@<each classifier>``: their train and evaluate stages with DVC's bookkeeping. The
sides alternate, so a pair shares the machine's mood; the medians of the pairs' differences are the
answer. Writes ``benchmarks/results/seed_cost.json``.
Usage: python benchmarks/seed_cost.py [--rounds 3] [--baseline 17019ac]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import commit_all, copy_project, dvc, run  # noqa: E402

CLASSIFIERS = ["mnist-logreg", "mnist-ann", "mnist-mlp", "mnist-cnn", "mnist-cnn-book", "mnist-inception",
               "mnist-resnet", "mnist-lstm", "mnist-bilstm", "cifar-resnet", "cifar-fast"]
RESULTS = ROOT / "benchmarks" / "results" / "seed_cost.json"


def side(name: str, baseline: str, where: Path) -> Path:
    """A fresh git repo of the baseline commit's tree or of this checkout, its datasets prepared."""
    if name == "baseline":
        where.mkdir(parents=True)
        subprocess.run(f"git archive {baseline} | tar -x -C {where}", shell=True, check=True, cwd=ROOT)
        run(where, "git", "init", "-q")
        commit_all(where, baseline)
    else:
        copy_project(where)
    dvc(where, "repro", "prepare@mnist", "prepare@cifar")
    return where


def training_seconds(repo: Path, lesson: str) -> float:
    """Every seed's training, from the train log (one seed's ``train_seconds`` before seeds existed)."""
    summary = json.loads((repo / "results" / lesson / "train" / "metrics.json").read_text())
    runs = summary.get("over_seeds", {}).get("runs")
    return sum(each["train_seconds"] for each in runs.values()) if runs else summary["train_seconds"]


def timed_build(repo: Path) -> dict:
    started = time.perf_counter()
    dvc(repo, "repro", *(f"evaluate@{lesson}" for lesson in CLASSIFIERS))
    wall = time.perf_counter() - started
    training = {lesson: round(training_seconds(repo, lesson), 2) for lesson in CLASSIFIERS}
    return {"wall": round(wall, 1), "training": round(sum(training.values()), 1), "per_lesson": training}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default="17019ac", help="the last commit before seeds")
    args = parser.parse_args()
    pairs = []
    for number in range(1, args.rounds + 1):
        pair = {}
        for name in ("baseline", "three seeds"):
            with tempfile.TemporaryDirectory(prefix="lessonflow-seed-cost-") as folder:
                pair[name] = timed_build(side(name, args.baseline, Path(folder) / "project"))
            print(f"pair {number}, {name}: {pair[name]['wall']} s wall, {pair[name]['training']} s training", flush=True)
        pairs.append(pair)
    more = {key: [pair["three seeds"][key] - pair["baseline"][key] for pair in pairs] for key in ("wall", "training")}
    summary = {key: {"median": round(statistics.median(values), 1), "min": round(min(values), 1),
                     "max": round(max(values), 1)} for key, values in more.items()}
    RESULTS.write_text(json.dumps({"baseline": args.baseline, "pairs": pairs, "more": summary}, indent=1) + "\n")
    print(f"three seeds cost {summary['wall']['median']} s more wall time (median of {len(pairs)} pairs; "
          f"{summary['wall']['min']}–{summary['wall']['max']}), {summary['training']['median']} s of it training; "
          f"the goal is at most 60 s")


if __name__ == "__main__":
    main()
