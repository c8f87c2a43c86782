"""A lesson's seeds side by side (``orchestration.seed_workers``): the models the serial loop trains, a
failure named by its seed, a killed run resumed from each seed's checkpoint.

Real training of `mnist-cnn-book` (convolutions: its CPU results depend on the thread count) on a slice
of the embedded digits, in spawned worker processes; the kill is a real SIGKILL of a real stage process.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ONE_THREAD, ROOT, killed_once_written, project_env, read_json, run
from test_advanced_mnist import lesson_params, one_epoch_params, tiny_digits  # noqa: F401 (a fixture)

from lessonflow.errors import ParamsError
from lessonflow.paths import Layout
from lessonflow.schema import OrchestrationParams, load_orchestration
from stages.evaluate import evaluate as evaluate_stage
from stages.train import train as train_stage

LESSON = "mnist-cnn-book"
TIMING = ("train_seconds", "over_seeds")


def with_workers(workers: int, **lesson):
    params = one_epoch_params(LESSON, seeds=3, **lesson)
    return params.model_copy(update={"orchestration": OrchestrationParams(seed_workers=workers)})


def copy_of(digits: Path, folder: Path) -> Layout:
    layout = Layout(folder)
    layout.prepared("mnist").parent.mkdir(parents=True)
    layout.prepared("mnist").write_bytes(Layout(digits).prepared("mnist").read_bytes())
    return layout


def models(layout: Layout) -> dict[str, bytes]:
    folder = layout.model(LESSON).parent
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*.pt"))}


@pytest.mark.long  # two workers start a Python with torch each
def test_seeds_trained_side_by_side_are_the_models_the_serial_loop_trains(tiny_digits, tmp_path):  # noqa: F811
    results = {}
    for workers in (1, 2):
        layout = copy_of(tiny_digits, tmp_path / f"workers-{workers}")
        train_stage(LESSON, with_workers(workers, epochs=2), layout)
        evaluate_stage(LESSON, with_workers(workers, epochs=2), layout)
        train_log = read_json(layout.train_log(LESSON) / "metrics.json")
        runs = {seed: {k: v for k, v in run.items() if k not in TIMING} for seed, run in train_log["over_seeds"]["runs"].items()}
        results[workers] = (models(layout), runs, {k: v for k, v in train_log.items() if k not in TIMING},
                            read_json(layout.eval_log(LESSON) / "metrics.json"))
    serial, parallel = results[1], results[2]
    assert list(serial[0]) == ["model.pt", "seed-1/model.pt", "seed-2/model.pt"]
    assert len(set(serial[0].values())) == 3, "each seed trains its own model"
    assert parallel[0] == serial[0], "a seed trained in a worker differs from the same seed trained in turn"
    assert parallel[1:] == serial[1:]  # each seed's train facts, the first seed's log, the evaluation over seeds


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.long)])
def test_a_failing_seed_fails_the_stage_naming_it(tiny_digits, tmp_path, workers):  # noqa: F811
    layout = copy_of(tiny_digits, tmp_path / "project")
    blocked = layout.model(LESSON).parent / "seed-2"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where seed 2's folder goes")
    with pytest.raises(OSError) as raised:
        train_stage(LESSON, with_workers(workers), layout)
    assert f"while training seed 2 of lessons.{LESSON}" in "\n".join(getattr(raised.value, "__notes__", [])), raised.value
    assert not (layout.train_log(LESSON) / "metrics.json").exists(), "a failed stage wrote its train log"


def mini_project(folder: Path, digits: Path, workers: int, epochs: int) -> Path:
    """A folder a real ``python -m stages.train`` runs in: params.yaml and the prepared digits."""
    copy_of(digits, folder)
    entry = lesson_params(LESSON) | {"epochs": epochs, "seeds": 3}
    entry.pop("embedded", None)
    (folder / "params.yaml").write_text(yaml.safe_dump({
        "device": "cpu", "datasets": {"mnist": {"source": "embedded"}}, "lessons": {LESSON: entry},
        "orchestration": {"seed_workers": workers}}))
    return folder


STAGE = [sys.executable, "-m", "stages.train", LESSON]
KILLED_EPOCHS = 30
ENV = project_env(**ONE_THREAD, PYTHONPATH=str(ROOT))


@pytest.mark.long  # three trainings of three seeds
def test_a_killed_side_by_side_run_resumes_each_seed_to_the_serial_result(tiny_digits, tmp_path):  # noqa: F811
    # enough epochs that a worker slow to start (importing torch under load) still finds the other mid-seed
    reference = mini_project(tmp_path / "serial", tiny_digits, 1, epochs=KILLED_EPOCHS)
    run(reference, *STAGE, env=ENV)

    repo = mini_project(tmp_path / "parallel", tiny_digits, 2, epochs=KILLED_EPOCHS)
    folder = Layout(repo).model(LESSON).parent
    checkpoints = [folder / "checkpoint.pt", folder / "seed-1" / "checkpoint.pt"]  # the two workers' first seeds
    killed_once_written(STAGE, repo, ENV, *checkpoints)
    assert not (folder / "seed-1" / "model.pt").exists(), "the kill came too late: seed 1 had finished"
    time.sleep(1)  # the workers die with the stage: nothing is written after the kill
    killed = {path: path.stat().st_mtime_ns for path in folder.rglob("*.pt")}
    time.sleep(2)
    assert {path: path.stat().st_mtime_ns for path in folder.rglob("*.pt")} == killed, "a worker outlived its stage"

    resumed = run(repo, *STAGE, env=ENV)
    midway = re.findall(rf"{LESSON}: resuming after epoch (\d+) of {KILLED_EPOCHS}", resumed.stdout + resumed.stderr)
    assert len([epoch for epoch in midway if 0 < int(epoch) < KILLED_EPOCHS]) >= 2, resumed
    assert models(Layout(repo)) == models(Layout(reference))
    assert not list(folder.rglob("*checkpoint*")), "the finished training left a checkpoint"


def test_seed_workers_below_one_are_refused_naming_the_key(tmp_path):
    (tmp_path / "params.yaml").write_text("orchestration: {seed_workers: 0}\n")
    with pytest.raises(ParamsError) as raised:
        load_orchestration(tmp_path / "params.yaml")
    assert "orchestration.seed_workers: Input should be greater than or equal to 1 (got 0)" in str(raised.value)
