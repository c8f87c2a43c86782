"""Lesson kinds called as plain functions on tiny in-memory inputs: what they train, measure and draw.

No prepared file, no DVC, no output folder: a kind is given its lesson, data, device and checkpoint
and returns its result, and only the stage runner writes files (the last tests check that for every kind).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from conftest import ROOT, project_params

from lessonflow.codedeps import closure, kind_module
from lessonflow.contract import Checkpoint, Evaluated, Saved, Trained
from lessonflow.datasets.toy import POINT_SETS
from lessonflow.kinds import KINDS, classifier, foundation_grid, kind_of, rnn_scratch, scratch_line, seq2seq, style_transfer
from lessonflow.params import parse_params
from lessonflow.records import run_facts
from lessonflow.schema import ParamsError
from lessonflow.zoo import build_model

CPU = torch.device("cpu")
UNUSED = Checkpoint(Path("never-written.pt"), "", "")  # the NumPy kinds keep no checkpoint


@pytest.fixture
def digits() -> dict:
    """Three classes of 8×8 uint8 images, few enough to train in milliseconds."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(90) % 3
    images = (torch.rand(90, 1, 8, 8, generator=generator) * 80 + labels.view(-1, 1, 1, 1) * 80).to(torch.uint8)
    return {"x_train": images[:60], "y_train": labels[:60], "x_val": images[60:75], "y_val": labels[60:75],
            "x_test": images[75:], "y_test": labels[75:], "classes": ["a", "b", "c"], "source": "embedded"}


def as_saved(trained: Trained, data_source: str, seed: int = 0) -> Saved:
    """What the stage runner would hand the evaluation: the states and the train log's summary."""
    return Saved(trained.states, {**run_facts(trained.seconds, trained.device, data_source, seed), **trained.summary})


def test_a_classifier_trains_and_scores_in_memory_writing_nothing_but_its_checkpoint(digits, tmp_path):
    lesson = classifier.Lesson.model_validate({
        "kind": "classifier", "dataset": "mnist", "model": {"name": "mlp", "hidden": [8]},
        "optimizer": {"name": "sgd", "lr": 0.5}, "epochs": 3, "batch_size": 20})
    torch.manual_seed(0)
    trained = classifier.train(lesson, name="tiny", data=digits, device=CPU,
                               checkpoint=Checkpoint(tmp_path / "checkpoint.pt", "f", "tiny"))
    assert [path.name for path in tmp_path.iterdir()] == ["checkpoint.pt"]
    assert [row["epoch"] for row in trained.history] == [1, 2, 3] and set(trained.curves) >= {"val_accuracy"}
    assert trained.summary == {"epochs": 3, "train_samples": 60, "train_split": "train", "recipe": "tutorial"}
    assert all(value.device == CPU for value in trained.states["model"].values())  # saved from the CPU

    result = classifier.evaluate(lesson, name="tiny", data=digits, device=CPU, saved=as_saved(trained, "embedded"))
    assert isinstance(result, Evaluated)
    assert result.metrics["test_samples"] == 15 and 0 <= result.metrics["test_accuracy"] <= 1
    assert result.metrics["epochs"] == 3 and result.metrics["data_source"] == "embedded"
    predictions = result.arrays["predictions.npz"]
    assert predictions["test_probs"].shape == (15, 3) and predictions["val_probs"].shape == (15, 3)
    assert set(result.images) == {"confusion_matrix.png", "misclassified.png"}


def test_the_embedded_settings_are_in_place_before_the_kind_trains():
    lesson = classifier.Lesson.model_validate(project_params()["lessons"]["mnist-lstm"])
    assert lesson.embedded is not None
    resolved = lesson.for_source("embedded")
    assert resolved.embedded is None and resolved.fast is None  # nothing left for a later step to choose
    assert classifier.train_config(resolved) == classifier.train_config(lesson, "embedded")
    assert classifier.train_config(lesson.for_source("official")) == classifier.train_config(lesson)


def test_style_transfer_takes_its_embedded_budget_there_only_and_knows_its_four_convolutions():
    lesson = style_transfer.Lesson.model_validate(project_params()["lessons"]["style-transfer"])
    resolved = lesson.for_source("embedded")
    assert resolved.embedded is None and (resolved.size, resolved.line_search) == (64, "strong_wolfe")
    seed = lesson.for_source("mirror")
    assert (seed.size, seed.closure_calls, seed.style_weight, seed.line_search) == (224, 300, 1000.0, None)
    with pytest.raises(ValidationError, match="convolutions 1..4"):
        style_transfer.Lesson.model_validate({"kind": "style_transfer", "dataset": "images", "style_layers": [5]})


def test_a_grid_search_is_computed_and_read_off_in_memory():
    data = {name: {column: torch.tensor(values).view(-1, 1) for column, values in columns.items()}
            for name, columns in POINT_SETS.items()}
    lesson = foundation_grid.Lesson.model_validate({"kind": "foundation_grid", "dataset": "toy"})
    trained = foundation_grid.train(lesson, name="grid", data=data, device=CPU, checkpoint=UNUSED)
    assert trained.device == "cpu"  # its curve is the loss over the grid of w, so train/plots is never empty
    assert [row["mse"] for row in trained.history] == trained.states["model"]["line_mse"].tolist()
    result = foundation_grid.evaluate(lesson, name="grid", data=data, device=CPU, saved=as_saved(trained, "toy"))
    assert result.metrics["w"] == pytest.approx(2.0) and result.metrics["final_loss"] == pytest.approx(0)
    assert (result.metrics["surface"]["w"], result.metrics["surface"]["b"]) == pytest.approx((3.0, 2.0))
    assert set(result.images) == {"loss_over_w.png", "loss_surface.png"}


def test_nearest_neighbours_predict_the_mean_of_the_closest_rows():
    x = torch.tensor([[1.0, 5.0], [2.0, 6.0], [3.0, 7.0], [4.0, 8.0]])
    data = {"features": ["A", "RM"], "key_feature": "RM", "x_train": x, "y_train": torch.tensor([10., 20., 30., 40.]),
            "x_test": x[:2], "y_test": torch.tensor([10., 20.])}
    lesson = scratch_line.Lesson.model_validate(
        {"kind": "scratch_line", "dataset": "boston", "method": {"name": "knn", "neighbours": 2, "query": 7.4}})
    trained = scratch_line.train(lesson, name="knn", data=data, device=CPU, checkpoint=UNUSED)
    assert trained.summary == {"feature": "RM"}
    assert len(trained.history) == 1 and trained.history[0]["mse"] > 0  # no steps: its MSE on the rows it keeps
    result = scratch_line.evaluate(lesson, name="knn", data=data, device=CPU, saved=as_saved(trained, "sample"))
    assert result.metrics["prediction_at_query"] == pytest.approx(35.0)  # the rows at RM 7 and 8
    assert set(result.images) == {"fit.png"}  # a lazy learner has no training curve


def test_the_seeds_rnn_learns_its_letters_and_answers_its_two_questions():
    lesson = rnn_scratch.Lesson.model_validate(project_params()["lessons"]["rnn-scratch"])
    trained = rnn_scratch.train(lesson, name="rnn", data={}, device=CPU, checkpoint=UNUSED)
    assert trained.device == "cpu" and trained.history[-1]["loss"] < trained.history[0]["loss"]
    result = rnn_scratch.evaluate(lesson, name="rnn", data={}, device=CPU, saved=as_saved(trained, "embedded"))
    assert (result.metrics["next_after_c"], result.metrics["next_after_fg"]) == ("d", "h")  # what the seed expected
    assert result.metrics["next_char_accuracy"] == 1.0 and result.metrics["data_source"] == "embedded"
    assert set(result.images) == {"next_letter.png"}


def refused(lesson_id: str, **entry) -> str:
    """The one line params.yaml's check gives for the project's lesson with ``entry``'s keys changed."""
    raw = project_params()
    raw["lessons"][lesson_id].update(entry)
    with pytest.raises(ParamsError) as error:
        parse_params(raw, lessons=[lesson_id], datasets=[])
    return str(error.value).splitlines()[-1].strip()


def test_a_sequence_lesson_with_a_bad_entry_is_refused_naming_the_key():
    assert refused("rnn-scratch", sequences={"abz": "bcd"}) == \
        "lessons.rnn-scratch.sequences: 'abz' -> 'bcd' uses z, not in alphabet 'abcdefghi'"
    assert refused("rnn-scratch", queries={"ab": "cd"}).startswith("lessons.rnn-scratch.queries: 'ab' -> 'cd': a query")
    assert refused("seq2seq-fra-eng", model={"name": "mlp"}) == (
        "lessons.seq2seq-fra-eng.model.name: a translation lesson trains the 'attention_seq2seq' net (got 'mlp'); "
        "allowed: attention_seq2seq")


PHRASES = [["j ai deux ans .", "i am two years old ."], ["il a deux ans .", "he is two years old ."],
           ["j ai trois ans .", "i am three years old ."], ["il a trois ans .", "he is three years old ."]]


def test_a_translation_model_trains_and_scores_held_out_pairs_in_memory():
    lesson = seq2seq.Lesson.model_validate({
        "kind": "seq2seq", "dataset": "fra-eng", "iterations": 40, "record_every": 10, "learning_rate": 0.05,
        "model": {"name": "attention_seq2seq", "hidden": 16, "dropout": 0.1, "max_length": 10}})
    data = {"train_pairs": PHRASES[:3], "test_pairs": PHRASES[3:], "source": "embedded"}
    torch.manual_seed(0)
    trained = seq2seq.train(lesson, name="s2s", data=data, device=CPU, checkpoint=UNUSED)
    assert len(trained.history) == 4 and trained.summary["train_pairs"] == 3
    assert trained.states["vocabulary"]["target"][:4] == ["<SOS>", "<EOS>", "i", "am"]
    assert trained.network.built_for == {"input_shape": [len(trained.states["vocabulary"]["source"])],
                                         "outputs": len(trained.states["vocabulary"]["target"])}
    result = seq2seq.evaluate(lesson, name="s2s", data=data, device=CPU, saved=as_saved(trained, "embedded"))
    assert 0 <= result.metrics["test_bleu"] <= 100 and result.metrics["test_exact_match"] in (0.0, 1.0)
    assert result.metrics["test_pairs"] == 1 and result.metrics["data_source"] == "embedded"
    assert set(result.images) == {"held_out_translations.png", "attention.png"}


def test_the_translation_lessons_embedded_budget_applies_to_the_embedded_data_only():
    lesson = seq2seq.Lesson.model_validate(project_params()["lessons"]["seq2seq-fra-eng"])
    assert lesson.iterations == 75000 and lesson.for_source("official").iterations == 75000
    resolved = lesson.for_source("embedded")
    assert (resolved.iterations, resolved.learning_rate) == (lesson.embedded.iterations, lesson.embedded.learning_rate)
    assert resolved.model_copy(update={"iterations": lesson.iterations, "learning_rate": lesson.learning_rate}) == lesson


def test_every_kind_is_a_module_with_its_schema_and_its_two_functions():
    for name in KINDS:
        kind = kind_of(name)
        assert kind.__name__ == kind_module(name)
        assert callable(kind.train) and callable(kind.evaluate) and kind.Lesson.model_fields["kind"]
    with pytest.raises(ParamsError, match="unknown lesson kind 'nope'; allowed: autoencoder, backbone, classifier"):
        kind_of("nope")


def test_a_stage_runs_its_own_lessons_kind_only():
    modules = closure(["stages.train", kind_module("tabular")])
    assert {"lessonflow/kinds/tabular.py", "lessonflow/kinds/classifier.py"} <= set(modules)
    assert not {"lessonflow/kinds/gan.py", "lessonflow/kinds/stock.py"} & set(modules)


WRITERS = {"live_log", "atomic_path", "atomic_dir", "Layout", "save", "savez_compressed", "write_text",
           "write_bytes", "open"}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_no_kind_writes_a_file_or_knows_where_files_go(name):
    path = ROOT / "lessonflow" / "kinds" / f"{name}.py"
    tree = ast.parse(path.read_text())
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    used |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert not (used | imported) & WRITERS, sorted((used | imported) & WRITERS)
    assert "lessonflow.paths" not in {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}


@pytest.fixture
def shapes() -> dict:
    """Four classes of 16×16 colour images (stripes one way or the other, a bright or a dark square), few enough
    to train a backbone in a second: classes 1 and 3 play cat and dog, which the backbone never sees."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(240) % 4
    images = torch.rand(240, 3, 16, 16, generator=generator) * 60
    images[labels == 0, :, ::4] += 150
    images[labels == 1, :, :, ::4] += 150
    images[labels == 2, :, 4:12, 4:12] += 150
    images[labels == 3, :, 4:12, 4:12] += 90
    images = images.clamp(0, 255).to(torch.uint8)
    return {"dataset": "shapes", "x_train": images[:160], "y_train": labels[:160], "x_val": images[160:200],
            "y_val": labels[160:200], "x_test": images[200:], "y_test": labels[200:],
            "classes": ["rows", "columns", "bright", "dark"], "source": "synthetic"}


def tiny_transfer(model: dict, **extra) -> tuple:
    """A backbone lesson and a transfer lesson on ``shapes``, both with ``model``."""
    common = {"dataset": "shapes", "model": model, "optimizer": {"name": "adam", "lr": 0.01}, "batch_size": 16,
              "normalize": [0.5, 0.5]}
    backbone = kind_of("backbone").Lesson.model_validate(
        {**common, "kind": "backbone", "held_out_classes": [1, 3], "epochs": 4})
    transfer = kind_of("transfer").Lesson.model_validate(
        {**common, "kind": "transfer", "backbone": "tiny-backbone", "classes": [1, 3], "train_images": 5,
         "epochs": 5, **extra})
    return backbone, transfer


@pytest.mark.parametrize("model", [{"name": "vgg_small", "channels": [4, 8], "hidden": 16},
                                   {"name": "resnet_cifar", "blocks": 1, "channels": [4, 8]}])
def test_a_transfer_lesson_trains_a_head_on_a_frozen_backbone_that_stays_unchanged(shapes, tmp_path, model):
    backbone_lesson, lesson = tiny_transfer(model)
    torch.manual_seed(0)
    backbone = kind_of("backbone").train(backbone_lesson, name="tiny-backbone", data=shapes, device=CPU,
                                         checkpoint=Checkpoint(tmp_path / "b-checkpoint.pt", "f", "b"))
    assert backbone.summary["train_samples"] == 80 and backbone.network.built_for["outputs"] == 2  # 2 of 4 classes
    before = {key: value.clone() for key, value in backbone.states["model"].items()}
    trained = kind_of("transfer").train(lesson, name="tiny", data={**shapes, "backbone": backbone.states["model"]},
                                        device=CPU, checkpoint=Checkpoint(tmp_path / "checkpoint.pt", "f", "tiny"))
    assert all(torch.equal(before[key], value) for key, value in backbone.states["model"].items())  # frozen is frozen
    saved = trained.states["model"]
    assert all(torch.equal(saved[key], value) for key, value in before.items() if key.startswith("features."))
    assert trained.summary["train_samples"] == 10  # five of each class, for the head and the from-scratch net alike
    assert trained.summary["trainable_parameters"] < trained.summary["scratch_trainable_parameters"]
    assert {"scratch_val_accuracy", "val_accuracy"} <= set(trained.history[-1]) and len(trained.history) == 5
    result = kind_of("transfer").evaluate(lesson, name="tiny", data=shapes, device=CPU,
                                          saved=as_saved(trained, "synthetic"))
    assert result.metrics["test_samples"] == 20 and result.metrics["backbone"] == "tiny-backbone"
    assert result.metrics["transfer_gain"] == pytest.approx(
        result.metrics["test_accuracy"] - result.metrics["scratch_test_accuracy"], abs=1e-5)
    assert result.arrays["predictions.npz"]["test_probs"].shape == (20, 2)


def test_a_backbone_of_another_architecture_stops_the_transfer_lesson_naming_it(shapes):
    _, lesson = tiny_transfer({"name": "vgg_small", "channels": [4, 8], "hidden": 16})
    other = build_model("vgg_small", {"channels": [4, 6]}, in_shape=(3, 16, 16), num_classes=2).state_dict()
    with pytest.raises(ValueError, match=r"^the model of backbone lesson 'tiny-backbone': another architecture than "
                                         r"this lesson's model: features.5.weight is of shape \(6, 4, 3, 3\), expected "
                                         r"\(8, 4, 3, 3\)$"):
        kind_of("transfer").train(lesson, name="tiny", data={**shapes, "backbone": other}, device=CPU, checkpoint=UNUSED)
    resnet = build_model("resnet_cifar", {"blocks": 1}, in_shape=(3, 16, 16), num_classes=2).state_dict()
    with pytest.raises(ValueError, match="another architecture than this lesson's model: features.0.weight is of shape"):
        kind_of("transfer").train(lesson, name="tiny", data={**shapes, "backbone": resnet}, device=CPU,
                                  checkpoint=UNUSED)


def test_the_transfer_lessons_take_their_embedded_settings_on_the_synthetic_images():
    lesson = kind_of("transfer").Lesson.model_validate(project_params()["lessons"]["catdog-vgg16"])
    assert lesson.optimizer.lr == 1e-5 and lesson.epochs == 5  # the seed's
    on_sample = lesson.for_source("synthetic")
    assert on_sample.optimizer.lr > lesson.optimizer.lr and on_sample.embedded is None
    assert lesson.for_source("mirror").optimizer.lr == 1e-5
