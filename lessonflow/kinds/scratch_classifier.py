"""The ``scratch_classifier`` lesson kind: seed 000's NumPy classifiers on sign-language digits 0 and 1.

Logistic regression (``logreg``) or the 2-layer tanh/sigmoid net (``nn2``), trained by
full-batch gradient descent with hand-written gradients on flattened 64×64 images in
[0, 1], then compared, as the seed does, with scikit-learn's
``LogisticRegression(random_state=42, max_iter=150)`` on the same split.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from lessonflow.contract import Checkpoint, Evaluated, Prepared, Saved, Trained
from lessonflow.figures import curve_panels, image_grid
from lessonflow.records import carried_facts
from lessonflow.schema import LessonBase
from lessonflow.scratch.classifiers import MODELS, accuracy, gradient_descent

WRONG_SHOWN = 16


class ScratchClassifierLesson(LessonBase):
    model: Literal["logreg", "nn2"]
    hidden: int = Field(3, gt=0, description="nn2 only: hidden tanh units")
    init: float = Field(0.01, description="logreg: every initial weight; nn2: scale of the randn weights")
    learning_rate: float = Field(gt=0)
    iterations: int = Field(gt=0)
    record_every: int = Field(10, gt=0, description="cost curve resolution, in iterations")
    sklearn_max_iter: int = Field(150, gt=0)


def flat(images: torch.Tensor) -> np.ndarray:
    """uint8 (N, 1, 64, 64) -> float64 (N, 4096) in [0, 1], the seed's X.npy scale."""
    return images.reshape(len(images), -1).numpy().astype(np.float64) / 255.0


def model_args(lesson: ScratchClassifierLesson) -> dict[str, Any]:
    return {"weight": lesson.init} if lesson.model == "logreg" else {"hidden": lesson.hidden, "scale": lesson.init}


Lesson = ScratchClassifierLesson


def train(lesson: ScratchClassifierLesson, *, name: str, data: Prepared, device: torch.device,
          checkpoint: Checkpoint) -> Trained:
    x, y = flat(data["x_train"]), data["y_train"].numpy().astype(np.float64)
    model = MODELS[lesson.model]
    started = time.perf_counter()
    params = model.init(x.shape[1], np.random.default_rng(lesson.seed), **model_args(lesson))
    params, costs = gradient_descent(model, params, x, y, learning_rate=lesson.learning_rate,
                                     iterations=lesson.iterations)
    seconds = time.perf_counter() - started
    return Trained(states={"model": {"params": {key: torch.from_numpy(np.asarray(value)) for key, value in params.items()},
                                     "costs": torch.tensor(costs)}},
                   seconds=seconds, device="cpu",
                   summary={"final_cost": round(costs[-1], 6), "iterations": lesson.iterations},
                   history=[{"cost": c} for c in costs[::lesson.record_every]], curves={"cost": "train/cost"})


def sklearn_accuracies(x_train, y_train, x_test, y_test, max_iter: int) -> tuple[float, float]:
    """The seed's comparison; its convergence warning is expected at max_iter=150 and silenced as in the seed."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = LogisticRegression(random_state=42, max_iter=max_iter).fit(x_train, y_train)
    return reference.score(x_train, y_train), reference.score(x_test, y_test)


def evaluate(lesson: ScratchClassifierLesson, *, name: str, data: Prepared, device: torch.device,
             saved: Saved) -> Evaluated:
    x_train, x_test = flat(data["x_train"]), flat(data["x_test"])
    y_train, y_test = data["y_train"].numpy(), data["y_test"].numpy()
    state = saved.states["model"]
    params = {key: value.numpy() for key, value in state["params"].items()}
    model = MODELS[lesson.model]
    test_probs = model.probabilities(params, x_test)
    sk_train, sk_test = sklearn_accuracies(x_train, y_train, x_test, y_test, lesson.sklearn_max_iter)
    trained = saved.metrics
    metrics = {
        "train_accuracy": round(accuracy(model.probabilities(params, x_train), y_train), 6),
        "test_accuracy": round(accuracy(test_probs, y_test), 6),
        "sklearn_train_accuracy": round(sk_train, 6), "sklearn_test_accuracy": round(sk_test, 6),
        "final_cost": trained["final_cost"], "iterations": trained["iterations"],
        **carried_facts(trained), "reference_accuracy": lesson.reference_accuracy,
    }
    predicted = (test_probs > 0.5).astype(int)
    wrong = np.flatnonzero(predicted != y_test)[:WRONG_SHOWN]
    return Evaluated(metrics, images={
        "learning_curve.png": curve_panels(
            {f"{lesson.model}: full cross-entropy on the training split": state["costs"].tolist()},
            f"{name}: training cost", xlabel="iteration", ylabel="cost"),
        "misclassified.png": image_grid(
            data["x_test"][wrong].numpy(), [f"{y_test[i]} → {predicted[i]}" for i in wrong],
            f"{name}: misclassified test images (true → predicted)"),
    }, arrays={"predictions.npz": {"test_probs": test_probs, "y_test": y_test}})
