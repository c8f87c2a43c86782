"""The fast CIFAR-10 recipe (``cifar-fast``): its augmentation, its test-time flips and one short run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, project_env, project_params
from test_cifar import build

from lessonflow.fastcifar import flip_translate, normalized, predict
from lessonflow.params import ParamsError, parse_params
from lessonflow.paths import Layout
from lessonflow.zoo import build_model
from stages.evaluate import evaluate as evaluate_stage
from stages.train import train as train_stage


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict:
    return build(tmp_path_factory.mktemp("synthetic"), source="embedded")


def tiny_airbench() -> torch.nn.Module:
    return build_model("airbench", {"widths": [8, 16, 16]}, in_shape=(3, 32, 32), num_classes=10)


def views_of(image: torch.Tensor, pad: int):
    """Every mirrored and shifted copy ``flip_translate`` may make of one image, with how it was made."""
    for flip in (False, True):
        padded = F.pad((image.flip(2) if flip else image)[None], (pad,) * 4, mode="reflect")[0]
        for top in range(2 * pad + 1):
            for left in range(2 * pad + 1):
                yield (top, left, flip), padded[:, top:top + image.shape[1], left:left + image.shape[2]]


def test_training_batches_are_mirrored_and_shifted_copies_of_the_images():
    x = torch.rand(64, 3, 32, 32)
    torch.manual_seed(3)
    out = flip_translate(x, 2)
    made = []
    for image, augmented in zip(x, out):
        found = [how for how, view in views_of(image, 2) if torch.equal(augmented, view)]
        assert found, "an augmented image is not a mirrored or shifted copy of its input"
        made.append(found[0])
    assert len({how[:2] for how in made}) > 10 and {how[2] for how in made} == {False, True}
    unshifted = flip_translate(x, 0)
    assert all(torch.equal(a, b) or torch.equal(a, b.flip(2)) for a, b in zip(unshifted, x))


def test_test_images_are_never_augmented_only_averaged_over_their_mirror_image(synthetic):
    model = tiny_airbench()
    model.whiten(normalized(synthetic["x_train"][:200]))
    x = synthetic["x_test"][:50]
    model.eval()
    with torch.no_grad():
        clean = model(normalized(x))
        mirrored = model(normalized(x).flip(3))
    torch.manual_seed(0)
    first = predict(model, x, 0, channels_last=False)
    assert torch.equal(first, clean)  # level 0: the clean images, nothing random
    assert torch.allclose(predict(model, x, 1, channels_last=False), 0.5 * (clean + mirrored), atol=1e-6)
    again = predict(model, x, 2, channels_last=True)
    assert torch.equal(predict(model, x, 2, channels_last=True), again)  # deterministic, whatever the RNG does
    assert not model.training


def test_the_recipe_names_its_net():
    raw = project_params()
    raw["lessons"]["cifar-fast"]["model"] = {"name": "resnet_cifar"}
    with pytest.raises(ParamsError, match="lessons.cifar-fast.model.name: the fast recipe trains the 'airbench' net"):
        parse_params(raw)


def test_the_sample_budget_applies_on_the_synthetic_images_only():
    lesson = parse_params(project_params()).lessons["cifar-fast"]
    for source in ("official", "mirror"):
        assert lesson.for_source(source) == lesson  # the real data trains the recipe as written
    sample = lesson.for_source("synthetic")
    assert (sample.epochs, sample.batch_size) == (lesson.embedded.epochs, lesson.embedded.batch_size)
    assert sample.model_copy(update={"epochs": lesson.epochs, "batch_size": lesson.batch_size}) == lesson


def test_cifar_fast_lesson_trains_a_short_run_on_the_embedded_data_and_evaluates_with_flips(synthetic, tmp_path):
    raw = project_params()
    lesson = raw["lessons"]["cifar-fast"]
    assert lesson["beyond_tutorial"] and lesson["reference_accuracy"] == 0.8779
    lesson["embedded"] = {"epochs": 1, "batch_size": 100}
    lesson["seeds"] = 1  # one seed: tests/test_seeds.py trains several
    layout = Layout(tmp_path)
    layout.prepared("cifar").parent.mkdir(parents=True)
    torch.save({**synthetic, "x_train": synthetic["x_train"][:300], "y_train": synthetic["y_train"][:300]},
               layout.prepared("cifar"))
    params = parse_params(raw)
    torch.manual_seed(0)
    train_stage("cifar-fast", params, layout)
    metrics = evaluate_stage("cifar-fast", params, layout)
    assert metrics["epochs"] == 1 and metrics["data_source"] == "synthetic" and metrics["train_samples"] == 300
    assert np.isfinite(metrics["test_loss"]) and 0 <= metrics["test_accuracy"] <= 1
    predictions = np.load(layout.eval_log("cifar-fast") / "outputs" / layout.predictions("cifar-fast").name)
    assert predictions["test_probs"].shape == (len(synthetic["y_test"]), 10)  # what the cifar ensemble reads
    assert (layout.eval_log("cifar-fast") / "plots").is_dir()


@pytest.mark.long  # the contributor's tier stays under 10 minutes (BENCHMARKS.md, test tiers)
def test_the_benchmark_trains_both_nets_and_draws_accuracy_against_time(tmp_path):
    """``benchmarks/cifar_fast.py`` on the synthetic stand-in: the commands BENCHMARKS.md's numbers come from."""
    script = [sys.executable, str(ROOT / "benchmarks" / "cifar_fast.py")]
    for command in ("train", "tutorial"):
        result = subprocess.run([*script, command, "--data", "embedded", "--epochs", "1", "--threads", "1", "--out",
                                 str(tmp_path / command)], capture_output=True, text=True, env=project_env())
        assert result.returncode == 0, result.stderr
        record = json.loads((tmp_path / f"{command}.json").read_text())
        assert record["epochs"] == 1 and len(record["curve"]) == 1 and 0 <= record["final_accuracy"] <= 1
        assert (tmp_path / f"{command}.tsv").read_text().startswith("epoch\ttrain_seconds\ttrain_loss\ttest_accuracy\n1\t")
    fast = json.loads((tmp_path / "train.json").read_text())
    assert fast["widths"] == project_params()["lessons"]["cifar-fast"]["model"]["widths"]
    assert {"tta0", "tta1", "tta2"} <= set(fast)
    drawn = subprocess.run([*script, "plot", str(tmp_path / "train.json"), str(tmp_path / "tutorial.json"), "--out",
                            str(tmp_path / "curve")], capture_output=True, text=True, env=project_env())
    assert drawn.returncode == 0, drawn.stderr
    assert (tmp_path / "curve.png").read_bytes().startswith(b"\x89PNG")
