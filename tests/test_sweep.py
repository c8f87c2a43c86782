"""`lessonflow sweep`: a grid of params values as DVC experiments, run side by side in clones of the checkout.

The long tests run the real CLI (an ephemeral Prefect server, real DVC) on a copy of the project where
``mnist-logreg`` trains for 2 epochs and is built once, so each experiment only retrains that lesson.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
from conftest import BIN, ONE_THREAD, commit_all, copy_project, dvc, project_env, run, snapshot

LR = "lessons.mnist-logreg.optimizer.lr"


def sweep_env(tmp_path: Path) -> dict[str, str]:
    """A user's shell with no Prefect server configured: the flow starts a temporary one."""
    env = project_env(PREFECT_HOME=str(tmp_path / "prefect"))
    for key in [key for key in env if key.startswith("PREFECT_") and key != "PREFECT_HOME"]:
        env.pop(key)
    return env


def sweep(repo: Path, tmp_path: Path, *args: str, check: bool = True):
    return run(repo, str(BIN / "lessonflow"), "sweep", *args, env=sweep_env(tmp_path), check=check, timeout=600)


def clones() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("lessonflow-sweep-*"))


def experiments(repo: Path) -> dict[str, dict]:
    """Each experiment `dvc exp show` lists in the checkout: its params.yaml and its metrics, by name."""
    shown = json.loads(dvc(repo, "exp", "show", "--json").stdout)
    return {exp["name"]: rev["data"] for baseline in shown for exp in baseline.get("experiments") or []
            for rev in exp["revs"]}


def logreg(data: dict) -> dict:
    """mnist-logreg's entry in an experiment's params.yaml, from ``experiments``."""
    return data["params"]["params.yaml"]["data"]["lessons"]["mnist-logreg"]


def test_grid_is_every_combination_as_dvc_exp_run_overrides():
    from flows.sweep import grid

    assert grid([f"{LR}=0.01,0.02", "lessons.mnist-logreg.seed=0,1"]) == [
        [f"++{LR}=0.01", "++lessons.mnist-logreg.seed=0"], [f"++{LR}=0.01", "++lessons.mnist-logreg.seed=1"],
        [f"++{LR}=0.02", "++lessons.mnist-logreg.seed=0"], [f"++{LR}=0.02", "++lessons.mnist-logreg.seed=1"]]
    assert grid(["profile=full"]) == [["++profile=full"]]
    with pytest.raises(ValueError, match="not a KEY=V1,V2"):
        grid([LR])


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("sweep-check") / "project")


@pytest.mark.parametrize(("assignment", "expected"), [
    ("lessons.mnist-logreg.optimizr.lr=0.1,0.2",
     ["lessons.mnist-logreg.optimizr: unknown key; allowed keys here: kind, dataset, ", " optimizer, "]),
    ("lessons.mnist-lgreg.epochs=1,2", ["lessons: no entry 'mnist-lgreg'; known: ", " mnist-logreg, "]),
    (f"{LR}=0.1,-1", [f"{LR}=-1: params.yaml is invalid:\n  {LR}: Input should be greater than 0"]),
])
def test_a_bad_key_or_value_stops_the_sweep_before_anything_runs(fresh_copy, tmp_path, assignment, expected):
    repo, before = fresh_copy, clones()
    result = sweep(repo, tmp_path, assignment, "-j", "2", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("lessonflow sweep: "), result.stderr
    assert all(fragment in result.stderr for fragment in expected), result.stderr
    assert "temporary server" not in result.stdout + result.stderr, "Prefect started before the check"
    assert not run(repo, "git", "for-each-ref", "refs/exps").stdout
    assert clones() <= before


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """mnist-logreg (2 epochs) built and committed: an experiment only retrains and re-evaluates it."""
    from dvc.utils.serialize import modify_yaml

    repo = copy_project(tmp_path_factory.mktemp("sweep") / "project")
    with modify_yaml(str(repo / "params.yaml")) as params:
        params["lessons"]["mnist-logreg"]["epochs"] = 2
    dvc(repo, "repro", "evaluate@mnist-logreg", env=project_env(**ONE_THREAD))
    commit_all(repo, "mnist-logreg built, 2 epochs")
    return repo


@pytest.mark.long
def test_sweep_runs_three_experiments_two_at_a_time_and_leaves_the_workspace_alone(baseline, tmp_path):
    before, params, leftovers = snapshot(baseline), (baseline / "params.yaml").read_bytes(), clones()
    result = sweep(baseline, tmp_path, f"{LR}=0.05,0.1,0.2", "-j", "2", "--target", "mnist-logreg")
    summary = result.stdout + result.stderr
    assert "3 of 3 experiment(s) done" in summary and summary.count("| done | ") == 3, summary
    assert summary.count("mnist-logreg: test_accuracy ") == 3, summary
    first_two = [summary.index(f"-{number}: {LR}=") for number in (1, 2)]
    assert max(first_two) < summary.index(" recorded in "), "the first two experiments did not run side by side"

    swept = {name: data for name, data in experiments(baseline).items() if name.startswith("sweep-")}
    assert len(swept) == 3, swept.keys()
    named = {re.fullmatch(r"(sweep-\d{8}T\d{6}Z-[0-9a-f]{4})-[123]", name) for name in swept}
    assert None not in named and len({found[1] for found in named}) == 1, swept.keys()  # time and run id, then i
    assert {logreg(data)["optimizer"]["lr"] for data in swept.values()} == {0.05, 0.1, 0.2}
    accuracies = {data["metrics"]["results/mnist-logreg/eval/metrics.json"]["data"]["test_accuracy"]
                  for data in swept.values()}
    assert len(accuracies) == 3, accuracies
    history = run(baseline, str(BIN / "lessonflow"), "history", "--lesson", "mnist-logreg").stdout
    assert all(name in history for name in swept), history

    assert snapshot(baseline) == before and (baseline / "params.yaml").read_bytes() == params
    assert not run(baseline, "git", "status", "--porcelain").stdout
    assert clones() <= leftovers


@pytest.mark.long
def test_a_failed_experiment_fails_the_sweep_and_the_others_are_recorded(baseline, tmp_path):
    # A seed torch cannot take passes the schema (any int) and fails the training stage.
    bad_seed = 2 ** 70
    known, leftovers = set(experiments(baseline)), clones()
    result = sweep(baseline, tmp_path, f"lessons.mnist-logreg.seed=1,{bad_seed}", "-j", "2",
                   "--target", "train@mnist-logreg", check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"lessons.mnist-logreg.seed={bad_seed}) failed:" in output and "Overflow" in output, output
    after = experiments(baseline)
    (new,) = set(after) - known
    assert logreg(after[new])["seed"] == 1
    assert clones() <= leftovers
