"""The ``scratch_line`` lesson kind: seed 004 day 1, the price from one feature (Boston ``RM``).

``method`` picks the seed's three attempts: ``knn`` (mean price of the nearest rooms),
``random-search`` (random integer k, b for y = k·x + b, keep the best) and
``gradient-descent`` (hand-written partial derivatives of the MSE). Each fits the
training split and is scored on the held-out test split; the seed fits all 506 rows
and reports only the training loss.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from lessonflow.contract import Checkpoint, Evaluated, Prepared, Saved, Trained
from lessonflow.figures import curve_panels, fitted_curves
from lessonflow.records import carried_facts
from lessonflow.schema import LessonBase, Strict
from lessonflow.scratch.line import fit_line, knn_predict, mse, random_search

CURVE_POINTS = 200


class KNN(Strict):
    name: Literal["knn"]
    neighbours: int = Field(3, gt=0)
    query: float = 7.0          # the seed asks for the price of a 7-room house


class RandomSearch(Strict):
    name: Literal["random-search"]
    tries: int = Field(1000, gt=0)
    low: int = -100
    high: int = 100


class GradientDescent(Strict):
    name: Literal["gradient-descent"]
    learning_rate: float = Field(1e-2, gt=0)
    steps: int = Field(1000, gt=0)
    low: int = -100             # the start (k, b) is a random integer pair in [low, high], as in the seed
    high: int = 100


class LineLesson(LessonBase):
    method: KNN | RandomSearch | GradientDescent = Field(discriminator="name")


def one_feature(data: Prepared, split: str) -> tuple[np.ndarray, np.ndarray]:
    column = data["features"].index(data["key_feature"])
    return data[f"x_{split}"][:, column].double().numpy(), data[f"y_{split}"].double().numpy()


Lesson = LineLesson


def train(lesson: LineLesson, *, name: str, data: Prepared, device: torch.device, checkpoint: Checkpoint) -> Trained:
    method = lesson.method
    x, y = one_feature(data, "train")
    rng = np.random.default_rng(lesson.seed)
    started = time.perf_counter()
    curve: list[float] = []
    if method.name == "knn":  # a lazy learner: the model is the training data
        model = {"x": torch.from_numpy(x), "y": torch.from_numpy(y)}
    elif method.name == "random-search":
        k, b, curve = random_search(x, y, rng, tries=method.tries, low=method.low, high=method.high)
        model = {"k": k, "b": b}
    else:
        k0, b0 = (float(v) for v in rng.integers(method.low, method.high, endpoint=True, size=2))
        k, b, curve = fit_line(x, y, k0, b0, learning_rate=method.learning_rate, steps=method.steps)
        model = {"k": k, "b": b, "k0": k0, "b0": b0}
    seconds = time.perf_counter() - started
    every = max(1, len(curve) // CURVE_POINTS)
    logged = curve[::every] or [mse(y, predictor(model, method)(x))]  # k-NN takes no step: its MSE on the rows it keeps
    return Trained(states={"model": {**model, "curve": torch.tensor(curve)}}, seconds=seconds, device="cpu",
                   summary={"feature": data["key_feature"]},
                   history=[{"mse": value} for value in logged], curves={"mse": "train/mse"})


def predictor(model: dict[str, Any], method: KNN | RandomSearch | GradientDescent):
    if method.name == "knn":
        return lambda x: knn_predict(model["x"].numpy(), model["y"].numpy(), np.atleast_1d(x), method.neighbours)
    return lambda x: model["k"] * np.asarray(x) + model["b"]


def evaluate(lesson: LineLesson, *, name: str, data: Prepared, device: torch.device, saved: Saved) -> Evaluated:
    method = lesson.method
    (x_train, y_train), (x_test, y_test) = one_feature(data, "train"), one_feature(data, "test")
    model = saved.states["model"]
    predict = predictor(model, method)
    metrics = {"method": method.name, "feature": data["key_feature"],
               "train_mse": round(mse(y_train, predict(x_train)), 6),
               "test_mse": round(mse(y_test, predict(x_test)), 6)}
    if method.name == "knn":
        metrics.update(query=method.query, prediction_at_query=round(float(predict(method.query)[0]), 6))
    else:
        metrics.update(k=round(model["k"], 6), b=round(model["b"], 6))
        if method.name == "gradient-descent":  # where it ends depends on the random start: 1000 steps do not converge
            metrics.update(start_k=model["k0"], start_b=model["b0"])
    metrics.update(**carried_facts(saved.metrics), reference_accuracy=lesson.reference_accuracy)
    grid = np.linspace(min(x_train.min(), x_test.min()), max(x_train.max(), x_test.max()), CURVE_POINTS)
    images = {"fit.png": fitted_curves(
        {"model": (grid, predict(grid))}, f"{name}: {method.name}",
        points={"train": (x_train, y_train), "test": (x_test, y_test)}, xlabel=data["key_feature"], ylabel="target")}
    if len(model["curve"]):
        label = "best MSE after each try" if method.name == "random-search" else "MSE after each step"
        images["loss_curve.png"] = curve_panels(
            {label: model["curve"].tolist()}, f"{name}: training MSE", xlabel="step", ylabel="MSE")
    return Evaluated(metrics, images,
                     arrays={"predictions.npz": {"x_test": x_test, "y_test": y_test, "predicted": predict(x_test)}})
