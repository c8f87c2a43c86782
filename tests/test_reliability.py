"""Reliability with real processes: a SIGKILLed training resumes to the same model, a diverging one
keeps the committed results, two `dvc repro` at once corrupt nothing, two clean runs agree bit for bit."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import (
    BIN, ONE_THREAD, QUICK_LESSONS, clone, copy_project, dvc, killed_after_checkpoint, killed_once_written, project_env,
    read_json, run, stages_ran,
)

from lessonflow.contract import Checkpoint
from lessonflow.runtime import make_deterministic
from lessonflow.schema import Augmentation
from lessonflow.training import TrainConfig, train_classifier
from lessonflow.zoo import build_model

ENV = project_env(**ONE_THREAD)
TIMING = ("train_seconds", "over_seeds")  # a train log's over_seeds: each seed's training time


def set_lesson(repo: Path, lesson: str, **optimizer) -> None:
    params_path = repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["lessons"][lesson]["optimizer"].update(optimizer)
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))


def metrics(repo: Path, lesson: str, step: str) -> dict:
    return {k: v for k, v in read_json(repo / "results" / lesson / step / "metrics.json").items() if k not in TIMING}


def curves(repo: Path, lesson: str) -> dict[str, list[tuple[str, str]]]:
    """Every per-epoch curve as (step, value) rows; DVCLive's wall-clock column is left out."""
    plots = repo / "results" / lesson / "train" / "plots"
    found = {}
    for path in sorted(plots.rglob("*.tsv")):
        with path.open() as fh:
            found[str(path.relative_to(plots))] = [(row["step"], row[path.stem]) for row in csv.DictReader(fh, delimiter="\t")]
    assert found, f"no curves under {plots}"
    return found


def files_under(repo: Path, *folders: str) -> dict[str, bytes]:
    return {str(p.relative_to(repo)): p.read_bytes() for folder in folders for p in (repo / folder).rglob("*") if p.is_file()}


def assert_same_training(repo: Path, reference: Path, lesson: str) -> None:
    model = f"models/{lesson}/model.pt"
    assert (repo / model).read_bytes() == (reference / model).read_bytes(), f"{model} differs"
    assert metrics(repo, lesson, "train") == metrics(reference, lesson, "train")
    assert curves(repo, lesson) == curves(reference, lesson)


@pytest.mark.long
def test_a_killed_training_resumes_to_exactly_the_uninterrupted_result(quick_built, tmp_path):
    repo = clone(quick_built, tmp_path / "repo")
    lesson = "mnist-cnn-book"
    for output in (repo / "models" / lesson, repo / "results" / lesson / "train"):
        for path in sorted(output.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
    checkpoint = repo / "models" / lesson / "checkpoint.pt"

    killed_once_written([sys.executable, "-m", "stages.train", lesson], repo, ENV, checkpoint)
    assert not (repo / "models" / lesson / "model.pt").exists(), "the kill came too late: training had finished"

    killed = checkpoint.read_bytes()

    resumed = dvc(repo, "repro", f"train@{lesson}", env=ENV).stdout
    match = re.search(rf"{lesson}: resuming after epoch (\d+) of (\d+)", resumed)
    assert match, resumed
    assert 1 <= int(match[1]) < int(match[2])
    assert_same_training(repo, quick_built, lesson)
    assert not checkpoint.exists(), "the finished training left its checkpoint"

    # a changed param: the killed run's checkpoint is not resumed, training starts over
    checkpoint.write_bytes(killed)
    set_lesson(repo, lesson, lr=0.01)
    restarted = run(repo, sys.executable, "-m", "stages.train", lesson, env=ENV).stdout
    assert "made with other params" in restarted and "resuming" not in restarted
    model = f"models/{lesson}/model.pt"
    assert (repo / model).read_bytes() != (quick_built / model).read_bytes()
    assert [step for step, _ in curves(repo, lesson)["metrics/train/loss.tsv"]] == [str(i) for i in range(3)]


@pytest.mark.long
def test_a_forced_retrain_trains_again_and_its_identical_model_leaves_the_evaluation_up_to_date(quick_built, tmp_path):
    repo = clone(quick_built, tmp_path / "repo")
    lesson = "mnist-cnn-book"
    assert not list((repo / "models").rglob("*checkpoint*")), "a finished training left a checkpoint"
    before = read_json(repo / "results" / lesson / "train" / "metrics.json")

    forced = dvc(repo, "repro", "--force", "--single-item", f"train@{lesson}", env=ENV)
    assert stages_ran(forced.stdout) == {f"train@{lesson}"}
    assert "resuming" not in forced.stdout + forced.stderr
    assert f"{lesson}:   0%" in forced.stderr, forced.stderr  # the progress bar starts from epoch 0
    assert read_json(repo / "results" / lesson / "train" / "metrics.json")["train_seconds"] != before["train_seconds"]
    assert_same_training(repo, quick_built, lesson)
    assert not list((repo / "models").rglob("*checkpoint*")), "the forced training left a checkpoint"

    status = dvc(repo, "status", f"evaluate@{lesson}", env=ENV).stdout
    assert "Data and pipelines are up to date" in status, status
    assert stages_ran(dvc(repo, "repro", f"evaluate@{lesson}", env=ENV).stdout) == set()


def test_the_checkpoint_restores_the_random_number_stream(tmp_path):
    """Random augmentation draws from the global RNG: a resumed run must draw what the killed one would have."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    x = torch.from_numpy((images.reshape(-1, 1, 8, 8) * 255 / 16).round()).to(torch.uint8)
    data = {"x_train": x[:300], "y_train": torch.from_numpy(labels[:300]), "x_val": x[300:400],
            "y_val": torch.from_numpy(labels[300:400])}

    def train(epochs: int, name: str, stir: bool = False) -> dict:
        make_deterministic(3)
        model = build_model("mlp", {"hidden": [16]}, in_shape=(1, 8, 8), num_classes=10)
        if stir:  # whatever state the new process is in, the checkpoint's must win
            torch.manual_seed(12345)
        cfg = TrainConfig(epochs=epochs, batch_size=50, optimizer="sgd", lr=0.1, seed=3,
                          augment=Augmentation(hflip=True))
        train_classifier(model, data, cfg, device=torch.device("cpu"),
                         checkpoint=Checkpoint(tmp_path / f"{name}.pt", "same", name), progress=False)
        return model.state_dict()

    straight = train(3, "straight")
    with killed_after_checkpoint(tmp_path / "resumed.pt"):
        train(3, "resumed")
    resumed = train(3, "resumed", stir=True)
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key


@pytest.mark.long
def test_a_diverging_training_stops_and_keeps_the_committed_results(quick_built, tmp_path):
    repo = clone(quick_built, tmp_path / "repo")
    kept = files_under(repo, "models/mnist-logreg", "results/mnist-logreg") | files_under(repo, "dvc.lock")
    # a logistic regression's loss stays finite even at lr 1e6; 1e38 overflows float32 within a step or two
    set_lesson(repo, "mnist-logreg", lr=1e38)
    result = dvc(repo, "repro", "evaluate@mnist-logreg", check=False, env=ENV)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert re.search(r"train@mnist-logreg failed: mnist-logreg: .*\b(nan|inf)\b.* at epoch [1-9]\d*, step [1-9]\d*",
                     output), output
    assert "Traceback" not in output
    assert files_under(repo, "models/mnist-logreg", "results/mnist-logreg") | files_under(repo, "dvc.lock") == kept


def cached(repo: Path, md5: str) -> Path:
    return repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def git_tracked_outputs(repo: Path) -> set[str]:
    """The ``cache: false`` outputs (metrics, curves): git keeps them, DVC's cache does not."""
    from dvc.repo import Repo

    with Repo(str(repo)) as project:
        return {str(Path(out.fs_path).relative_to(repo)) for stage in project.index.stages for out in stage.outs
                if not out.use_cache}


def assert_lock_matches_workspace_and_cache(repo: Path, stages: list[str]) -> None:
    """dvc.lock parses, and every output it records is in the workspace (and, if cached, the cache) with that hash."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    in_git = git_tracked_outputs(repo)
    for stage in stages:
        for out in lock["stages"][stage]["outs"]:
            path, md5 = repo / out["path"], out["md5"]
            if out["path"] in in_git:
                assert path.exists() and (md5.endswith(".dir") or md5_of(path) == md5)
            elif md5.endswith(".dir"):
                for entry in json.loads(cached(repo, md5).read_text()):
                    assert md5_of(path / entry["relpath"]) == entry["md5"] == md5_of(cached(repo, entry["md5"]))
            else:
                assert md5_of(path) == md5 == md5_of(cached(repo, md5))


# Whichever process loses the race is refused by DVC, either on the repo lock or on a stage's read/write lock.
DVC_LOCK_REFUSALS = ("Unable to acquire lock", "is busy, it is being blocked by")


@pytest.mark.long
def test_two_dvc_repro_at_once_corrupt_neither_lock_nor_cache(quick_built, tmp_path):
    repo = clone(quick_built, tmp_path / "repo")
    set_lesson(repo, "mnist-logreg", lr=0.1)
    command = [str(BIN / "dvc"), "repro", "train@mnist-logreg"]
    processes = [subprocess.Popen(command, cwd=repo, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(2)]
    outputs = [process.communicate(timeout=1800)[0] for process in processes]
    codes = [process.returncode for process in processes]

    assert 0 in codes, outputs
    for code, output in zip(codes, outputs):
        assert code == 0 or any(refusal in output for refusal in DVC_LOCK_REFUSALS), output
    assert sum(output.count("Running stage 'train@mnist-logreg'") for output in outputs) == 1
    status = dvc(repo, "status", "train@mnist-logreg", env=ENV).stdout
    assert "Data and pipelines are up to date" in status, status
    assert_lock_matches_workspace_and_cache(repo, ["prepare@mnist", "train@mnist-logreg"])
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert lock["stages"]["train@mnist-logreg"]["params"]["params.yaml"]["lessons.mnist-logreg"]["optimizer"]["lr"] == 0.1


@pytest.mark.long
def test_two_clean_runs_give_byte_identical_models_and_identical_metrics(quick_built, tmp_path):
    other = copy_project(tmp_path / "other")
    dvc(other, "repro", *(f"evaluate@{lesson}" for lesson in QUICK_LESSONS), env=ENV)
    for lesson in QUICK_LESSONS:
        assert_same_training(other, quick_built, lesson)
        assert metrics(other, lesson, "eval") == metrics(quick_built, lesson, "eval")
        predictions = f"results/{lesson}/eval/outputs/predictions.npz"
        with np.load(other / predictions) as ours, np.load(quick_built / predictions) as theirs:
            assert set(ours) == set(theirs)
            for name in ours:
                np.testing.assert_array_equal(ours[name], theirs[name])
