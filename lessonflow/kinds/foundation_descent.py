"""The ``foundation_descent`` lesson kind: gradient descent written out (``gradient-descent``, ``autograd-basics``).

The seeds fit y = w·x (and, as homework, y = w1·x² + w2·x + b) to three points by
updating the parameters themselves: the whole batch per step (``batch``) or one
point per step in order (``sample``, the seeds' "stochastic" variant), with the
gradient either derived by hand or taken from torch autograd. Both models are
linear in their parameters θ over features φ(x), so one hand-written gradient,
2/N · φᵀ(φθ − y), serves both, and the lesson can show that autograd agrees.

``grad_check`` reproduces 000's first autograd example: the gradient of ½Σx² at the
points of a set is x itself. Everything runs on the CPU whatever ``device`` says:
a few scalars gain nothing from an accelerator, and the metrics say ``cpu``.

Metrics hold each run (``<model>_<mode>``) under its name, and the first run's numbers
again at the top level (``headline_run`` names it), where reports look for ``final_loss``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import Field, field_validator

from lessonflow.atomic import atomic_path
from lessonflow.datasets import load_prepared
from lessonflow.datasets.toy import point_set
from lessonflow.figures import curve_panels
from lessonflow.kinds import LessonKind
from lessonflow.lessons import LessonRun
from lessonflow.records import carried_facts, live_log, log_curves, read_metrics, run_facts
from lessonflow.schema import LessonBase

ModelName = Literal["linear", "quadratic"]
ModeName = Literal["batch", "sample"]

# Feature map and parameter names of each model: prediction = features(x) @ theta.
MODELS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], tuple[str, ...]]] = {
    "linear": (lambda x: x, ("w",)),                                                    # y = w·x
    "quadratic": (lambda x: torch.cat([x * x, x, torch.ones_like(x)], 1), ("w1", "w2", "b")),  # w1·x² + w2·x + b
}


class DescentLesson(LessonBase):
    points: str = "linear"
    models: list[ModelName] = Field(default_factory=lambda: ["linear"], min_length=1)
    modes: list[ModeName] = Field(default_factory=lambda: ["batch"], min_length=1)
    gradients: Literal["hand", "autograd"] = "hand"
    w0: float = 1.0                # the seeds' initial guess, for every parameter
    lr: float = Field(0.01, gt=0)
    epochs: int = Field(100, gt=0)
    predict_at: float = 4.0
    grad_check: str | None = None  # a point set: autograd's gradient of ½Σx² there (000 "Variables")

    @field_validator("models", "modes")
    @classmethod
    def _distinct(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError("each entry may appear once")
        return names


def mse(theta: torch.Tensor, features: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (features @ theta - y).pow(2).mean()


def hand_gradient(theta: torch.Tensor, features: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d/dθ of mean((φθ − y)²) = 2/N · φᵀ(φθ − y), written out as the seeds do."""
    return 2 * features.T @ (features @ theta - y) / len(y)


def autograd_gradient(theta: torch.Tensor, features: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    theta = theta.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(mse(theta, features, y), theta)
    return grad


GRADIENTS = {"hand": hand_gradient, "autograd": autograd_gradient}


def descend(features: torch.Tensor, y: torch.Tensor, *, w0: float, lr: float, epochs: int, mode: str,
            gradient: Callable) -> tuple[torch.Tensor, list[float]]:
    """Plain gradient descent from θ = w0; the curve is the MSE over all points at the start of each epoch."""
    theta = torch.full((features.shape[1], 1), w0, dtype=features.dtype)
    steps = [slice(None)] if mode == "batch" else [slice(i, i + 1) for i in range(len(y))]
    curve = []
    for _ in range(epochs):
        curve.append(mse(theta, features, y).item())
        for rows in steps:
            theta = theta - lr * gradient(theta, features[rows], y[rows])
    return theta, curve


def half_sum_square_grad(x: torch.Tensor) -> torch.Tensor:
    """000 "Variables": o = ½Σx², so do/dx = x."""
    x = x.detach().clone().requires_grad_(True)
    (0.5 * (x ** 2).sum()).backward()
    return x.grad


def train(run: LessonRun) -> None:
    lesson, layout = run.lesson, run.layout
    data = load_prepared(layout.prepared(lesson.dataset))
    points = point_set(data, lesson.points, f"lessons.{run.lesson_id}.points")
    state: dict[str, Any] = {"model": {}, "theta": {}, "curves": {}}
    if lesson.grad_check is not None:
        at = point_set(data, lesson.grad_check, f"lessons.{run.lesson_id}.grad_check", targets=False)["x"]
        state["grad_check"] = {"x": at.flatten(), "grad": half_sum_square_grad(at).flatten()}
    started = time.perf_counter()
    for model in lesson.models:
        features = MODELS[model][0](points["x"])
        for mode in lesson.modes:
            name = f"{model}_{mode}"
            state["model"][name] = model
            state["theta"][name], state["curves"][name] = descend(
                features, points["y"], w0=lesson.w0, lr=lesson.lr, epochs=lesson.epochs, mode=mode,
                gradient=GRADIENTS[lesson.gradients])
    seconds = time.perf_counter() - started
    with atomic_path(layout.model(run.lesson_id)) as tmp:
        torch.save(state, tmp)
    with live_log(layout.train_log(run.lesson_id)) as live:
        rows = [dict(zip(state["curves"], losses)) for losses in zip(*state["curves"].values())]
        log_curves(live, rows, {name: f"train/mse/{name}" for name in state["curves"]})
        live.summary.update(**run_facts(seconds, "cpu", data["source"], lesson.seed,
                                        layout.model(run.lesson_id)), epochs=lesson.epochs)


def evaluate(run: LessonRun) -> dict[str, Any]:
    lesson, layout = run.lesson, run.layout
    data = load_prepared(layout.prepared(lesson.dataset))
    points = point_set(data, lesson.points, f"lessons.{run.lesson_id}.points")
    state = torch.load(layout.model(run.lesson_id), weights_only=True)
    at = torch.tensor([[lesson.predict_at]])
    key = f"prediction_x{lesson.predict_at:g}"
    metrics: dict[str, Any] = {}
    for name, theta in state["theta"].items():
        featurize, names = MODELS[state["model"][name]]
        start = torch.full_like(theta, lesson.w0)
        metrics[name] = {
            **{param: round(value, 6) for param, value in zip(names, theta.flatten().tolist())},
            "final_loss": round(mse(theta, featurize(points["x"]), points["y"]).item(), 6),
            f"{key}_before": round((featurize(at) @ start).item(), 6),
            key: round((featurize(at) @ theta).item(), 6),
        }
    if "grad_check" in state:
        check = state["grad_check"]
        metrics["half_sum_square_grad"] = {f"at_x{x:g}": round(g, 6)
                                           for x, g in zip(check["x"].tolist(), check["grad"].tolist())}
    trained = read_metrics(layout.train_log(run.lesson_id))
    first = next(iter(state["theta"]))  # headline numbers at the top: the first run listed
    metrics = {**metrics[first], "headline_run": first, **metrics}
    metrics.update(gradients=lesson.gradients, epochs=trained["epochs"], **carried_facts(trained),
                   reference=lesson.reference)
    with live_log(layout.eval_log(run.lesson_id)) as live:
        live.summary.update(metrics)
        live.log_image("loss_curves.png", curve_panels(
            state["curves"], f"{run.lesson_id}: MSE per epoch ({lesson.gradients} gradients, lr {lesson.lr:g})",
            ylabel="MSE"))
    return metrics


KIND = LessonKind(schema=DescentLesson, train=train, evaluate=evaluate)
