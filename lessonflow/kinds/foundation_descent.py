"""The ``foundation_descent`` lesson kind: gradient descent written out (``gradient-descent``, ``autograd-basics``).

The seeds fit y = w·x (and y = w1·x² + w2·x + b) to three points, per whole batch or per point
(their "stochastic" variant), with a hand-derived gradient or torch autograd. Both models are linear
in θ over features φ(x), so one hand-written gradient, 2/N · φᵀ(φθ − y), serves both and the lesson
shows that autograd agrees; ``grad_check`` is 000's first autograd example (∇½Σx² = x). It runs on
the CPU whatever ``device`` says, as a few scalars gain nothing from an accelerator. The first run's
numbers are repeated at the top level (``headline_run``), where reports look for ``final_loss``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import Field, field_validator

from lessonflow.contract import Checkpoint, Evaluated, Prepared, Saved, Trained
from lessonflow.datasets.toy import point_set
from lessonflow.figures import curve_panels
from lessonflow.records import carried_facts
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


Lesson = DescentLesson


def train(lesson: DescentLesson, *, name: str, data: Prepared, device: torch.device,
          checkpoint: Checkpoint) -> Trained:
    points = point_set(data, lesson.points, f"lessons.{name}.points")
    state: dict[str, Any] = {"model": {}, "theta": {}, "curves": {}}
    if lesson.grad_check is not None:
        at = point_set(data, lesson.grad_check, f"lessons.{name}.grad_check", targets=False)["x"]
        state["grad_check"] = {"x": at.flatten(), "grad": half_sum_square_grad(at).flatten()}
    started = time.perf_counter()
    for model in lesson.models:
        features = MODELS[model][0](points["x"])
        for mode in lesson.modes:
            run = f"{model}_{mode}"
            state["model"][run] = model
            state["theta"][run], state["curves"][run] = descend(
                features, points["y"], w0=lesson.w0, lr=lesson.lr, epochs=lesson.epochs, mode=mode,
                gradient=GRADIENTS[lesson.gradients])
    seconds = time.perf_counter() - started
    return Trained(states={"model": state}, seconds=seconds, device="cpu", summary={"epochs": lesson.epochs},
                   history=[dict(zip(state["curves"], losses)) for losses in zip(*state["curves"].values())],
                   curves={run: f"train/mse/{run}" for run in state["curves"]})


def evaluate(lesson: DescentLesson, *, name: str, data: Prepared, device: torch.device, saved: Saved) -> Evaluated:
    points = point_set(data, lesson.points, f"lessons.{name}.points")
    state = saved.states["model"]
    at = torch.tensor([[lesson.predict_at]])
    key = f"prediction_x{lesson.predict_at:g}"
    metrics: dict[str, Any] = {}
    for run, theta in state["theta"].items():
        featurize, names = MODELS[state["model"][run]]
        start = torch.full_like(theta, lesson.w0)
        metrics[run] = {
            **{param: round(value, 6) for param, value in zip(names, theta.flatten().tolist())},
            "final_loss": round(mse(theta, featurize(points["x"]), points["y"]).item(), 6),
            f"{key}_before": round((featurize(at) @ start).item(), 6),
            key: round((featurize(at) @ theta).item(), 6),
        }
    if "grad_check" in state:
        check = state["grad_check"]
        metrics["half_sum_square_grad"] = {f"at_x{x:g}": round(g, 6)
                                           for x, g in zip(check["x"].tolist(), check["grad"].tolist())}
    trained = saved.metrics
    first = next(iter(state["theta"]))  # headline numbers at the top: the first run listed
    metrics = {**metrics[first], "headline_run": first, **metrics}
    metrics.update(gradients=lesson.gradients, epochs=trained["epochs"], **carried_facts(trained),
                   reference=lesson.reference)
    fitted = {run: (MODELS[state["model"][run]][0](points["x"]) @ theta).numpy() for run, theta in state["theta"].items()}
    return Evaluated(metrics, images={"loss_curves.png": curve_panels(
        state["curves"], f"{name}: MSE per epoch ({lesson.gradients} gradients, lr {lesson.lr:g})", ylabel="MSE")},
        arrays={"predictions.npz": {"x": points["x"].numpy(), "y": points["y"].numpy(), **fitted}})
