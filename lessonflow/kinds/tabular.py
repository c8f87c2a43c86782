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

from lessonflow.classification import cross_entropy_trainer, evaluate_with, fit, plain_logits
from lessonflow.kinds import LessonKind
from lessonflow.lessons import LessonRun
from lessonflow.training import TrainConfig, TrainedLesson


class TabularLesson(TrainedLesson):
    """A classifier of feature rows; the input width comes from the prepared data."""


def train(run: LessonRun) -> None:
    fit(run, cross_entropy_trainer(lambda data_source: TrainConfig.of(run.lesson)))


def majority_baseline(y_train: torch.Tensor, y_test: torch.Tensor) -> tuple[int, float]:
    """The most common training class, and the test accuracy of always predicting it."""
    majority = int(torch.bincount(y_train).argmax())
    return majority, float((y_test == majority).float().mean())


def majority_metrics(data: dict[str, Any], predicted: torch.Tensor) -> dict[str, Any]:
    majority, baseline = majority_baseline(data["y_train"], data["y_test"])
    test_accuracy = float((predicted == data["y_test"]).float().mean())
    return {"majority_baseline_accuracy": round(baseline, 6), "majority_class": data["classes"][majority],
            "beats_majority_baseline": test_accuracy > baseline,
            "input_features": int(data["x_train"].shape[1])}


def evaluate(run: LessonRun) -> dict[str, Any]:
    return evaluate_with(run, plain_logits(None), majority_metrics, show_misclassified=False)


KIND = LessonKind(schema=TabularLesson, train=train, evaluate=evaluate)
