"""What recording a run as a DVC experiment costs (``dvc exp save``), by what the targets name.

``dvc exp save`` commits each target again (hashes its outputs, rewrites ``dvc.lock``) before the
experiment's commit; the flow passes only the stages the run changed, no longer every stage. This
times both after a run that changed one lesson, on copies of one built project, and counts DVC's
"is empty" warnings in each.
Usage: python benchmarks/record.py BUILT [--lesson mnist-logreg]  (BUILT: a committed, built copy)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import dvc, project_env, stages_ran  # noqa: E402

ONE_THREAD = project_env(LESSONFLOW_THREADS="1")


def every_stage(repo: Path) -> list[str]:
    """Every stage built so far (in ``dvc.lock``): what a run over the whole pipeline passed before."""
    from dvc.utils.serialize import load_yaml

    return list(load_yaml(str(repo / "dvc.lock"))["stages"])


def save(repo: Path, name: str, stages: list[str]) -> tuple[float, int]:
    """Seconds of ``dvc exp save`` with these targets, and its "is empty" warnings."""
    started = time.perf_counter()
    saved = dvc(repo, "exp", "save", "--force", "-n", name, *stages, env=ONE_THREAD)
    return time.perf_counter() - started, (saved.stdout + saved.stderr).count("is empty")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("built", type=Path)
    parser.add_argument("--lesson", default="mnist-logreg")
    args = parser.parse_args()
    from dvc.utils.serialize import modify_yaml

    with tempfile.TemporaryDirectory(prefix="lessonflow-record-") as scratch:
        changed = Path(scratch) / "changed"
        shutil.copytree(args.built, changed, symlinks=True)
        with modify_yaml(str(changed / "params.yaml")) as params:
            params["lessons"][args.lesson]["seed"] += 1
        everything = every_stage(changed)
        ran = sorted(stages_ran(dvc(changed, "repro", *everything, env=ONE_THREAD).stdout))
        copies = {"every stage (before)": everything, "the stages the run changed (now)": ran}
        print(f"the run changed {len(ran)} of {len(everything)} stages: {' '.join(ran)}")
        for number, (label, stages) in enumerate(copies.items()):
            copy = Path(scratch) / f"copy{number}"
            shutil.copytree(changed, copy, symlinks=True)
            seconds, empty = save(copy, f"bench-{number}", stages)
            print(f"| {label} | {len(stages)} | {seconds:.1f} s | {empty} |")


if __name__ == "__main__":
    main()
