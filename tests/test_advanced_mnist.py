"""Advanced MNIST lessons (LESSONS.md §4): Inception, residual net, (Bi)LSTM, autoencoder, GAN.

The models are checked for the fixes the catalogue asks for (the Inception block really runs
its four branches, the autoencoder rebuilds images), every lesson's own train and evaluate
run for one short epoch on a slice of the embedded digits, and one lesson goes through a real
``dvc repro`` in a copy of the project.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import dvc, killed_after_checkpoint, project_params, read_json

from lessonflow.datasets import download_dataset, load_prepared, prepare_dataset
from lessonflow.contract import Checkpoint
from lessonflow.params import DatasetParams, Params, parse_params
from lessonflow.paths import Layout
from lessonflow.zoo import GAN, AutoEncoder, InceptionA, InceptionNet, ResidualBlock, build_model
from stages.evaluate import evaluate as evaluate_stage
from stages.train import train as train_stage

LESSONS = ["mnist-inception", "mnist-resnet", "mnist-lstm", "mnist-bilstm", "mnist-autoencoder", "mnist-gan"]
CLASSIFIERS = LESSONS[:4]
DIGITS = (1, 28, 28)


def lesson_params(lesson_id: str) -> dict:
    return project_params()["lessons"][lesson_id]


def built(lesson_id: str, **overrides) -> torch.nn.Module:
    model = lesson_params(lesson_id)["model"] | overrides
    return build_model(model.pop("name"), model, in_shape=DIGITS, num_classes=10)


@pytest.mark.parametrize("lesson_id", CLASSIFIERS)
def test_each_classifier_gives_ten_logits_per_image(lesson_id):
    assert built(lesson_id)(torch.rand(3, *DIGITS)).shape == (3, 10)


def test_the_lstms_read_the_28_rows_as_time_steps():
    for lesson_id, directions in (("mnist-lstm", 1), ("mnist-bilstm", 2)):
        lstm = built(lesson_id).lstm
        assert (lstm.input_size, lstm.hidden_size, lstm.num_layers) == (28, 128, 2)
        assert lstm.bidirectional == (directions == 2)


def test_the_inception_block_runs_all_four_real_branches():
    block = InceptionA(10)
    out = block(torch.rand(2, 10, 12, 12))
    assert out.shape == (2, 88, 12, 12)  # 24 + 16 + 24 + 24 channels, size kept
    kernels = {name: conv.kernel_size for name, conv in block.named_modules() if isinstance(conv, torch.nn.Conv2d)}
    assert sorted(kernels.values()) == [(1, 1)] * 4 + [(3, 3)] * 2 + [(5, 5)]  # the seed had only 1x1 kernels
    assert sum(p.numel() for p in block.parameters()) == (
        (10 * 24 + 24) + (10 * 16 + 16) + (10 * 16 + 16) + (16 * 24 * 25 + 24)
        + (10 * 16 + 16) + (16 * 24 * 9 + 24) + (24 * 24 * 9 + 24))
    out.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())


def test_the_inception_net_calls_both_blocks_and_sizes_its_head_by_a_dry_pass():
    model = built("mnist-inception")
    assert isinstance(model, InceptionNet)
    calls = []
    for block in (m for m in model.modules() if isinstance(m, InceptionA)):
        block.register_forward_hook(lambda module, args, out: calls.append(out.shape[1:]))
    model(torch.rand(2, *DIGITS))
    assert calls == [(88, 12, 12), (88, 4, 4)]
    assert model.head[-1].in_features == 1408  # the tutorial's Linear(1408, 10), derived, not typed in


def test_the_residual_block_adds_its_input_back():
    block = ResidualBlock(4)
    for conv in (block.conv1, block.conv2):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    x = torch.rand(2, 4, 6, 6)  # non-negative: relu(0 + x) = x
    assert torch.equal(block(x), x)


def test_autoencoder_rebuilds_the_image_through_a_3d_code():
    model = built("mnist-autoencoder")
    assert isinstance(model, AutoEncoder)
    x = torch.rand(5, *DIGITS)
    assert model.encoder(x).shape == (5, 3)
    out = model(x)
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1


def test_gan_generates_images_in_the_tanh_range_and_rates_them():
    model = built("mnist-gan")
    assert isinstance(model, GAN)
    fake = model(torch.randn(4, model.noise))
    assert fake.shape == (4, *DIGITS) and -1 <= fake.min() and fake.max() <= 1
    verdict = model.discriminator(fake)
    assert verdict.shape == (4,) and ((0 < verdict) & (verdict < 1)).all()


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory) -> Path:
    """A slice of the embedded digits, prepared by the pipeline's own functions."""
    root = tmp_path_factory.mktemp("tiny")
    layout = Layout(root)
    settings = DatasetParams(source="embedded")
    download_dataset("mnist", settings, "embedded", layout.raw("mnist"))
    full = prepare_dataset("mnist", settings, layout.raw("mnist"), layout.prepared("mnist"))
    tiny = {**full, **{f"{part}_{split}": full[f"{part}_{split}"][:n]
                       for split, n in (("train", 200), ("val", 50), ("test", 60)) for part in "xy"}}
    torch.save(tiny, layout.prepared("mnist"))
    return root


def one_epoch_params(lesson_id: str, **overrides) -> Params:
    entry = lesson_params(lesson_id) | {"epochs": 1, "seeds": 1} | overrides  # tests/test_seeds.py trains several
    entry.pop("embedded", None)  # its sample-data settings would replace the one epoch
    if entry["kind"] == "gan":
        entry |= {"samples": 16, "judge": entry["judge"] | {"epochs": 1}}
    return parse_params({"device": "cpu", "datasets": {"mnist": {"source": "embedded"}},
                         "lessons": {lesson_id: entry}})


@pytest.mark.parametrize("lesson_id", LESSONS)
def test_each_lesson_trains_one_epoch_and_evaluates(tiny_digits, lesson_id):
    params, layout = one_epoch_params(lesson_id), Layout(tiny_digits)
    train_stage(lesson_id, params, layout)
    metrics = evaluate_stage(lesson_id, params, layout)
    kept = {"model.pt", "judge.pt"} if lesson_id == "mnist-gan" else {"model.pt"}
    assert {p.name for p in layout.model(lesson_id).parent.iterdir()} == kept  # the weights, no checkpoint
    assert read_json(layout.train_log(lesson_id) / "metrics.json")["epochs"] == 1
    assert read_json(layout.eval_log(lesson_id) / "metrics.json") == json.loads(json.dumps(metrics))
    assert metrics["data_source"] == "embedded" and metrics["device"] == "cpu"
    images = {p.name for p in (layout.eval_log(lesson_id) / "plots").rglob("*.png")}
    if lesson_id in CLASSIFIERS:
        assert 0 <= metrics["test_accuracy"] <= 1 and metrics["reference_accuracy"] > 0.9
        assert "confusion_matrix.png" in images
    elif lesson_id == "mnist-autoencoder":
        data = load_prepared(layout.prepared("mnist"))
        images_only = data["x_test"].float().div(255)
        # the target is the image: after one epoch it is rebuilt closer than a black picture would be
        assert 0 < metrics["test_mse"] < images_only.pow(2).mean().item()
        assert images == {"reconstructions.png", "code_space.png"}
        assert (layout.eval_log(lesson_id) / "outputs" / "codes.npz").is_file()
    else:
        shares = metrics["judge_class_share"]
        assert sorted(shares) == [str(d) for d in range(10)] and sum(shares.values()) == pytest.approx(1)
        assert {"judge_mean_max_prob", "judge_real_mean_max_prob", "judge_test_accuracy"} <= set(metrics)
        assert images == {"generated.png", "judge_classes.png"}
        assert (layout.model(lesson_id).parent / "judge.pt").is_file()
        curves = layout.train_log(lesson_id) / "plots" / "metrics" / "train"
        assert {p.stem for p in curves.iterdir()} >= {"d_loss", "g_loss"}


@pytest.mark.parametrize("train_split, trained_on, validated", [("train", 200, True), ("train+val", 250, False)])
def test_train_split_decides_whether_the_validation_images_are_trained_on(tiny_digits, train_split, trained_on,
                                                                          validated):
    params, layout = one_epoch_params("mnist-logreg", train_split=train_split), Layout(tiny_digits)
    train_stage("mnist-logreg", params, layout)
    metrics = evaluate_stage("mnist-logreg", params, layout)
    assert read_json(layout.train_log("mnist-logreg") / "metrics.json")["train_samples"] == trained_on
    assert metrics["train_samples"] == trained_on
    # a validation accuracy of images the model trained on would be a training accuracy: none is reported
    assert ("val_accuracy" in metrics) == validated
    assert (layout.train_log("mnist-logreg") / "plots" / "metrics" / "val").is_dir() == validated


def test_a_finished_training_leaves_no_checkpoint_and_the_next_one_trains_every_epoch(tiny_digits, capsys):
    params, layout = one_epoch_params("mnist-logreg", epochs=3), Layout(tiny_digits)
    train_stage("mnist-logreg", params, layout)
    first = layout.model("mnist-logreg").read_bytes()
    before = read_json(layout.train_log("mnist-logreg") / "metrics.json")
    assert not layout.checkpoint("mnist-logreg").exists()
    capsys.readouterr()
    train_stage("mnist-logreg", params, layout)  # what `dvc repro -f` runs
    shown = capsys.readouterr()
    assert "resuming" not in shown.out + shown.err
    after = read_json(layout.train_log("mnist-logreg") / "metrics.json")
    assert after["epochs"] == 3 and after["train_seconds"] != before["train_seconds"]  # really ran again
    assert layout.model("mnist-logreg").read_bytes() == first


def test_a_resumed_gan_ends_where_an_uninterrupted_one_ends(tiny_digits, tmp_path):
    from lessonflow.kinds.gan import train_gan
    from lessonflow.runtime import make_deterministic

    data = load_prepared(Layout(tiny_digits).prepared("mnist"))

    def gan_after(epochs: int, layout: Layout) -> dict:
        lesson = one_epoch_params("mnist-gan").lessons["mnist-gan"].model_copy(update={"epochs": epochs})
        make_deterministic(lesson.seed)
        model = build_model("gan", lesson.model.kwargs(), in_shape=DIGITS, num_classes=10)
        history = train_gan(lesson, model, data, torch.device("cpu"),
                            Checkpoint(layout.checkpoint("mnist-gan"), "same", "mnist-gan"))
        return model.state_dict(), history

    straight, _ = gan_after(2, Layout(tmp_path / "straight"))
    with killed_after_checkpoint(Layout(tmp_path / "resumed").checkpoint("mnist-gan")):
        gan_after(2, Layout(tmp_path / "resumed"))
    resumed, history = gan_after(2, Layout(tmp_path / "resumed"))
    assert [e["epoch"] for e in history.epochs] == [1, 2]
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key


def test_dvc_repro_builds_the_autoencoder_lesson(project):
    dvc(project, "repro", "evaluate@mnist-autoencoder")
    metrics = read_json(project / "results" / "mnist-autoencoder" / "eval" / "metrics.json")
    assert metrics["data_source"] == "embedded" and metrics["epochs"] == lesson_params("mnist-autoencoder")["epochs"]
    assert 0 < metrics["test_mse"] < 0.1
    images = project / "results" / "mnist-autoencoder" / "eval" / "plots" / "images"
    assert {p.name for p in images.iterdir()} == {"reconstructions.png", "code_space.png"}
    shown = dvc(project, "metrics", "show", "--json").stdout
    assert "results/mnist-autoencoder/eval/metrics.json" in shown and "test_mse" in shown
