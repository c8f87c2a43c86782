"""The ``tabular`` lesson kind: small classifiers on feature tables (Pima diabetes, seeds 002 §8-9 and 003 H/I).

Training is the shared classifier loop (``training.train_classifier``) on float feature
rows; the seed trains and reports on the same rows, so the lesson holds out a test split
and reports its accuracy beside the majority-class baseline, the accuracy of always
answering the most common training class. A model that does not beat it has learnt
nothing usable, and the metrics say so.
"""

from __future__ import annotations

from typing import Any

import torch

from lessonflow.contract import Checkpoint, Evaluated, Prepared, Saved, Trained
from lessonflow.kinds.classifier import plain_logits, scored_classifier, trained_classifier
from lessonflow.training import TrainConfig, TrainedLesson, train_classifier


class TabularLesson(TrainedLesson):
    """A classifier of feature rows; the input width comes from the prepared data."""


Lesson = TabularLesson


def train(lesson: TabularLesson, *, name: str, data: Prepared, device: torch.device,
          checkpoint: Checkpoint) -> Trained:
    config = TrainConfig.of(lesson)
    return trained_classifier(
        lesson, data, device,
        lambda model, splits: train_classifier(model, splits, config, device=device, checkpoint=checkpoint))


def majority_baseline(y_train: torch.Tensor, y_test: torch.Tensor) -> tuple[int, float]:
    """The most common training class, and the test accuracy of always predicting it."""
    majority = int(torch.bincount(y_train).argmax())
    return majority, float((y_test == majority).float().mean())


def majority_metrics(data: Prepared, predicted: torch.Tensor) -> dict[str, Any]:
    majority, baseline = majority_baseline(data["y_train"], data["y_test"])
    test_accuracy = float((predicted == data["y_test"]).float().mean())
    return {"majority_baseline_accuracy": round(baseline, 6), "majority_class": data["classes"][majority],
            "beats_majority_baseline": test_accuracy > baseline,
            "input_features": int(data["x_train"].shape[1])}


def evaluate(lesson: TabularLesson, *, name: str, data: Prepared, device: torch.device, saved: Saved) -> Evaluated:
    return scored_classifier(lesson, name, data, device, saved, plain_logits(None), majority_metrics,
                             show_misclassified=False)
