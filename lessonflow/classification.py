"""Training and scoring any cross-entropy classifier of prepared tensors (images or feature rows).

The ``classifier`` and ``tabular`` kinds are thin layers over these two functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from lessonflow.atomic import atomic_path
from lessonflow.figures import confusion_matrix_figure, image_grid
from lessonflow.lessons import LessonRun
from lessonflow.records import carried_facts, live_log, log_curves, outputs_of, read_metrics, run_facts
from lessonflow.schema import TrainSplit
from lessonflow.training import History, TrainConfig, predict_logits, train_classifier
from lessonflow.zoo import build_model

MISCLASSIFIED_SHOWN = 32
TRAIN_CURVES = {"train_loss": "train/loss", "train_accuracy": "train/accuracy"}
CURVES = {**TRAIN_CURVES, "val_loss": "val/loss", "val_accuracy": "val/accuracy"}


def build_for(lesson: Any, data: dict[str, Any]) -> torch.nn.Module:
    return build_model(lesson.model.name, lesson.model.kwargs(),
                       in_shape=tuple(data["x_train"].shape[1:]), num_classes=len(data["classes"]))


def with_validation_in_training(data: dict[str, Any]) -> dict[str, Any]:
    """The prepared splits with the validation images appended to the training ones, and no validation split.

    The tutorials trained on every training image; ``train_split: train+val`` does the same
    when a reproduction needs it (mnist-bilstm: 98.1 % on 60 000 images, 97.9 % on 54 000).
    """
    merged = {key: value for key, value in data.items() if key not in ("x_val", "y_val")}
    merged["x_train"] = torch.cat([data["x_train"], data["x_val"]])
    merged["y_train"] = torch.cat([data["y_train"], data["y_val"]])
    return merged


Trainer = Callable[..., History]  # (model, data, *, device, checkpoint, fingerprint, label) -> History
LogitsOf = Callable[[torch.nn.Module, torch.Tensor, torch.device], torch.Tensor]


def cross_entropy_trainer(configure: Callable[[str], TrainConfig]) -> Trainer:
    """The shared loop with the settings ``configure(data_source)`` gives: a lesson may train
    differently on the sample data."""
    return lambda model, data, **where: train_classifier(model, data, configure(data["source"]), **where)


def plain_logits(normalize: tuple[float, float] | None) -> LogitsOf:
    """Logits of the clean images, scaled as in training: every classifier's but the test-time-augmented ones'."""
    return lambda model, x, device: predict_logits(model, x, normalize, device)


def fit(run: LessonRun, trainer: Trainer, train_split: TrainSplit = "train", **summary: Any) -> None:
    """Train this lesson's model with ``trainer``; write ``models/<id>/`` and the train log.

    Shared by every kind whose lessons are classifiers of prepared tensors (images, feature rows).
    """
    lesson, layout = run.lesson, run.layout
    data, device, fingerprint = run.start_training()
    if train_split == "train+val":
        data = with_validation_in_training(data)
    model = build_for(lesson, data)
    history = trainer(model, data, device=device, checkpoint=layout.checkpoint(run.lesson_id),
                      fingerprint=fingerprint, label=run.lesson_id)
    with atomic_path(layout.model(run.lesson_id)) as tmp:
        torch.save(model.cpu().state_dict(), tmp)
    with live_log(layout.train_log(run.lesson_id)) as live:
        log_curves(live, history.epochs, CURVES if "x_val" in data else TRAIN_CURVES)
        live.summary.update(**run_facts(history.train_seconds, device.type, data["source"], lesson.seed,
                                        layout.model(run.lesson_id), model),
                            epochs=len(history.epochs), train_samples=len(data["y_train"]), train_split=train_split,
                            **summary)


def save_predictions(path, **arrays: np.ndarray) -> None:
    with path.open("wb") as fh:
        np.savez_compressed(fh, **arrays)


def evaluate_with(run: LessonRun, logits_of: LogitsOf,
                  extra_metrics: Callable[[dict, torch.Tensor], dict] | None = None,
                  show_misclassified: bool = True) -> dict[str, Any]:
    """Score a trained classifier on the test split; save its probabilities for the ensembles and its pictures.

    ``extra_metrics(data, predicted)`` adds a kind's own numbers (e.g. a majority-class baseline).
    A model trained on the validation images gets no validation accuracy: it would be a training one.
    """
    lesson, layout = run.lesson, run.layout
    model, data, device = run.load_trained(build_for)
    logits = {split: logits_of(model, data[f"x_{split}"], device) for split in ("val", "test")}
    y_test = data["y_test"]
    test_loss = torch.nn.functional.cross_entropy(logits["test"], y_test).item()
    predicted = logits["test"].argmax(1)
    trained = read_metrics(layout.train_log(run.lesson_id))
    held_out = {"val_accuracy": round((logits["val"].argmax(1) == data["y_val"]).float().mean().item(), 6)}
    metrics = {
        "test_accuracy": round((predicted == y_test).float().mean().item(), 6),
        "test_loss": round(test_loss, 6),
        **(held_out if trained["train_split"] == "train" else {}),
        "test_samples": len(y_test), "train_samples": trained["train_samples"],
        **(extra_metrics(data, predicted) if extra_metrics else {}),
        "epochs": trained["epochs"], **carried_facts(trained), "reference_accuracy": lesson.reference_accuracy,
    }
    with live_log(layout.eval_log(run.lesson_id)) as live:
        live.summary.update(metrics)
        save_predictions(outputs_of(live) / layout.predictions(run.lesson_id).name,
                         val_probs=logits["val"].softmax(1).numpy(), y_val=data["y_val"].numpy(),
                         test_probs=logits["test"].softmax(1).numpy(), y_test=y_test.numpy())
        live.log_image("confusion_matrix.png", confusion_matrix_figure(
            y_test.numpy(), predicted.numpy(), data["classes"], f"{run.lesson_id}: test confusion matrix"))
        if show_misclassified:
            wrong = (predicted != y_test).nonzero().flatten()[:MISCLASSIFIED_SHOWN]
            live.log_image("misclassified.png", image_grid(
                data["x_test"][wrong].numpy(),
                [f"{data['classes'][y_test[i]]} → {data['classes'][predicted[i]]}" for i in wrong],
                f"{run.lesson_id}: misclassified test images (true → predicted)"))
    return metrics
