"""The ``classifier`` lesson kind: image classifiers trained with cross-entropy (every MNIST lesson).

Its training and scoring of prepared tensors also serve the ``tabular`` (feature rows) and
``fast_cifar`` (its own recipe) kinds: one shared path for every classifier, whose saved
probabilities the ensembles combine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from lessonflow.contract import Checkpoint, Evaluated, Prepared, Saved, Trained
from lessonflow.figures import confusion_matrix_figure, image_grid
from lessonflow.records import carried_facts
from lessonflow.schema import (
    SAMPLE_SOURCES, Augmentation, LessonBase, Normalize, OptimizerParams, ParamsError, ScheduleName, Strict, TrainSplit,
)
from lessonflow.training import History, TrainConfig, TrainedLesson, predict_logits, train_classifier
from lessonflow.zoo import model_for, restored

LOG = logging.getLogger(__name__)
MISCLASSIFIED_SHOWN = 32
TRAIN_CURVES = {"train_loss": "train/loss", "train_accuracy": "train/accuracy"}
CURVES = {**TRAIN_CURVES, "val_loss": "val/loss", "val_accuracy": "val/accuracy"}


class Overrides(Strict):
    """Training settings beside the tutorial's (``fast``, ``embedded``): whatever it names replaces the lesson's."""

    optimizer: OptimizerParams | None = None
    schedule: ScheduleName | None = None
    epochs: int | None = Field(None, gt=0)
    batch_size: int | None = Field(None, gt=0)


class ClassifierLesson(TrainedLesson):
    """An image classifier trained with cross-entropy on a prepared image dataset.

    ``recipe: tutorial`` reproduces the tutorial's hyper-parameters; ``recipe: fast`` trains
    with those of the ``fast:`` block instead (the same model and data, a tuned schedule).
    Both are meant for the real 54 000 training images: on the embedded sample digits (about
    1 300) the same epochs are some forty times fewer steps, too few for some lessons to learn
    anything, so an ``embedded:`` block replaces their settings on the sample data only (the embedded
    digits, CIFAR's synthetic images).
    ``train_split: train+val`` trains on the validation images too, as the tutorials did (they
    held nothing out): the lesson then has no validation curve and no ensemble may use it.
    """

    normalize: Normalize | None = None
    augment: Augmentation | None = None  # training batches only; evaluation sees the clean images
    recipe: Literal["tutorial", "fast"] = "tutorial"
    fast: Overrides | None = None
    embedded: Overrides | None = None
    train_split: TrainSplit = "train"
    compile: bool = False  # torch.compile the model (worth it on a GPU; see lessonflow/accel.py)
    deterministic: bool = True  # false lets a GPU autotune cuDNN; CPU runs stay bit-reproducible

    @model_validator(mode="after")
    def _fast_block_given(self) -> ClassifierLesson:
        if self.recipe == "fast" and self.fast is None:
            raise ParamsError("recipe: 'fast' needs a 'fast:' block (optimizer, schedule, epochs, batch_size); "
                              "allowed recipes: tutorial, fast")
        return self

    def for_source(self, data_source: str) -> ClassifierLesson:
        """The lesson with the selected recipe's and, on the embedded data, the ``embedded:`` settings in place."""
        if data_source in SAMPLE_SOURCES and self.embedded:  # said, since an edit of the replaced keys does nothing
            LOG.info("on the embedded sample data this lesson trains with its embedded: %s",
                     self.embedded.model_dump(exclude_none=True))
        return self.chosen(data_source).model_copy(update={"fast": None, "embedded": None})

    def chosen(self, data_source: str | None = None) -> ClassifierLesson:
        """The lesson with the selected recipe's settings in place, then the embedded budget's on the sample data
        (the embedded digits, or CIFAR's synthetic images)."""
        lesson = self if self.recipe == "tutorial" else self.overridden_by(self.fast)
        return lesson.overridden_by(self.embedded) if data_source in SAMPLE_SOURCES else lesson

    def overridden_by(self, overrides: Overrides | None) -> ClassifierLesson:
        named = {key: getattr(overrides, key) for key in Overrides.model_fields} if overrides else {}
        return self.model_copy(update={key: value for key, value in named.items() if value is not None})


Lesson = ClassifierLesson


def train_config(lesson: ClassifierLesson, data_source: str | None = None) -> TrainConfig:
    lesson = lesson.chosen(data_source)
    return TrainConfig.of(lesson, normalize=lesson.normalize, augment=lesson.augment, compile=lesson.compile,
                          deterministic=lesson.deterministic)


def with_validation_in_training(data: Prepared) -> Prepared:
    """The prepared splits with the validation images appended to the training ones, and no validation split.

    The tutorials trained on every training image; ``train_split: train+val`` does the same
    when a reproduction needs it (mnist-bilstm).
    """
    merged = {key: value for key, value in data.items() if key not in ("x_val", "y_val")}
    merged["x_train"] = torch.cat([data["x_train"], data["x_val"]])
    merged["y_train"] = torch.cat([data["y_train"], data["y_val"]])
    return merged


Fitter = Callable[[torch.nn.Module, Prepared], History]  # trains the model in place on the splits given
LogitsOf = Callable[[torch.nn.Module, torch.Tensor, torch.device], torch.Tensor]


def trained_classifier(lesson: LessonBase, data: Prepared, device: torch.device, fitter: Fitter,
                       train_split: TrainSplit = "train", **summary: Any) -> Trained:
    """Build the lesson's model and train it with ``fitter``: what every classifier kind's ``train`` returns."""
    if train_split == "train+val":
        data = with_validation_in_training(data)
    model = model_for(lesson.model, data)
    history = fitter(model, data)
    return Trained(states={"model": model.cpu().state_dict()}, seconds=history.train_seconds, device=device.type,
                   summary={"epochs": len(history.epochs), "train_samples": len(data["y_train"]),
                            "train_split": train_split, **summary},
                   history=history.epochs, curves=CURVES if "x_val" in data else TRAIN_CURVES, network=model)


def train(lesson: ClassifierLesson, *, name: str, data: Prepared, device: torch.device,
          checkpoint: Checkpoint) -> Trained:
    config = train_config(lesson)
    return trained_classifier(
        lesson, data, device,
        lambda model, splits: train_classifier(model, splits, config, device=device, checkpoint=checkpoint),
        lesson.train_split, recipe=lesson.recipe)


def plain_logits(normalize: tuple[float, float] | None) -> LogitsOf:
    """Logits of the clean images, scaled as in training: every classifier's but the test-time-augmented ones'."""
    return lambda model, x, device: predict_logits(model, x, normalize, device)


def scored_classifier(lesson: LessonBase, name: str, data: Prepared, device: torch.device, saved: Saved,
                      logits_of: LogitsOf, extra_metrics: Callable[[Prepared, torch.Tensor], dict] | None = None,
                      show_misclassified: bool = True) -> Evaluated:
    """Score a trained classifier on the test split, with its probabilities for the ensembles and its pictures.

    ``extra_metrics(data, predicted)`` adds a kind's own numbers (e.g. a majority-class baseline).
    A model trained on the validation images gets no validation accuracy: it would be a training one.
    """
    model = restored(model_for(lesson.model, data), saved.states["model"], device)
    logits = {split: logits_of(model, data[f"x_{split}"], device) for split in ("val", "test")}
    y_test = data["y_test"]
    test_loss = torch.nn.functional.cross_entropy(logits["test"], y_test).item()
    predicted = logits["test"].argmax(1)
    trained = saved.metrics
    held_out = {"val_accuracy": round((logits["val"].argmax(1) == data["y_val"]).float().mean().item(), 6)}
    metrics = {
        "test_accuracy": round((predicted == y_test).float().mean().item(), 6),
        "test_loss": round(test_loss, 6),
        **(held_out if trained["train_split"] == "train" else {}),
        "test_samples": len(y_test), "train_samples": trained["train_samples"],
        **(extra_metrics(data, predicted) if extra_metrics else {}),
        "epochs": trained["epochs"], **carried_facts(trained), "reference_accuracy": lesson.reference_accuracy,
    }
    images = {"confusion_matrix.png": confusion_matrix_figure(
        y_test.numpy(), predicted.numpy(), data["classes"], f"{name}: test confusion matrix")}
    if show_misclassified:
        wrong = (predicted != y_test).nonzero().flatten()[:MISCLASSIFIED_SHOWN]
        images["misclassified.png"] = image_grid(
            data["x_test"][wrong].numpy(),
            [f"{data['classes'][y_test[i]]} → {data['classes'][predicted[i]]}" for i in wrong],
            f"{name}: misclassified test images (true → predicted)")
    arrays = {"predictions.npz": {"val_probs": logits["val"].softmax(1).numpy(), "y_val": data["y_val"].numpy(),
                                  "test_probs": logits["test"].softmax(1).numpy(), "y_test": y_test.numpy()}}
    return Evaluated(metrics, images, arrays)


def evaluate(lesson: ClassifierLesson, *, name: str, data: Prepared, device: torch.device, saved: Saved) -> Evaluated:
    return scored_classifier(lesson, name, data, device, saved, plain_logits(lesson.normalize))
