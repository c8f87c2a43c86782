"""The ``foundation_linear`` lesson kind: ``nn.Linear(1, 1)`` fitted by torch optimisers on a point set.

``linreg-car-prices``, ``linreg-optimizers`` and ``logistic-hours`` are one program in the seeds:
one linear unit, full-batch steps, MSE (or binary cross-entropy with a sigmoid output). Every
optimiser trains its own fresh copy of one seeded initial unit, because seed 003 F ran them one
after another on a single model, so each curve started where the previous stopped. The first
optimiser's numbers are repeated at the top level (``headline_run``), where reports look for them.
"""

from __future__ import annotations

import math
import time
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn

from lessonflow.contract import Checkpoint, Evaluated, Prepared, Saved, Trained
from lessonflow.datasets.toy import point_set
from lessonflow.errors import DivergedError
from lessonflow.figures import curve_panels, fitted_curves
from lessonflow.records import carried_facts
from lessonflow.schema import LessonBase, OptimizerName
from lessonflow.training import TrainConfig, make_optimizer

CURVE_POINTS = 200


class LinearFitLesson(LessonBase):
    points: str
    output: Literal["linear", "sigmoid"] = "linear"  # sigmoid: logistic regression, trained with BCE
    reduction: Literal["mean", "sum"] = "mean"       # of the loss over the points (the seeds' size_average)
    optimizers: list[OptimizerName] = Field(default_factory=lambda: ["sgd"], min_length=1)
    lr: float = Field(gt=0)
    epochs: int = Field(gt=0)
    predict_at: float = 4.0
    curve_range: tuple[float, float] = (0.0, 10.0)   # x range of the probability curve (sigmoid output)

    @field_validator("optimizers")
    @classmethod
    def _distinct(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError("each optimizer may appear once")
        return names


def loss_of(lesson: LinearFitLesson, linear: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    z = linear(x)
    if lesson.output == "sigmoid":  # the seeds' BCELoss on sigmoid outputs (its log is clamped at -100)
        return nn.functional.binary_cross_entropy(torch.sigmoid(z), y, reduction=lesson.reduction)
    return nn.functional.mse_loss(z, y, reduction=lesson.reduction)


def predict(lesson: LinearFitLesson, linear: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        z = linear(x)
    return torch.sigmoid(z) if lesson.output == "sigmoid" else z


def full_batch_steps(lesson: LinearFitLesson, linear: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     optimizer_name: str, label: str) -> list[float]:
    """Full-batch steps as in the seeds; the curve holds the loss each step was taken from."""
    optimizer = make_optimizer(linear, TrainConfig(epochs=lesson.epochs, batch_size=len(y),
                                                   optimizer=optimizer_name, lr=lesson.lr, seed=lesson.seed))
    curve = []
    for epoch in range(lesson.epochs):
        loss = loss_of(lesson, linear, x, y)
        curve.append(loss.item())
        if not math.isfinite(curve[-1]):
            raise DivergedError(f"{label}: {optimizer_name} loss became {curve[-1]} at epoch {epoch + 1}; "
                                "lower lr. Previous results were left untouched.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return curve


Lesson = LinearFitLesson


def train(lesson: LinearFitLesson, *, name: str, data: Prepared, device: torch.device,
          checkpoint: Checkpoint) -> Trained:
    points = point_set(data, lesson.points, f"lessons.{name}.points")
    x, y = points["x"].to(device), points["y"].to(device)
    initial = {key: value.clone() for key, value in nn.Linear(1, 1).state_dict().items()}
    state: dict[str, Any] = {"initial": initial, "fitted": {}, "curves": {}}
    started = time.perf_counter()
    for optimizer in lesson.optimizers:
        linear = nn.Linear(1, 1)
        linear.load_state_dict(initial)
        linear.to(device)
        state["curves"][optimizer] = full_batch_steps(lesson, linear, x, y, optimizer, name)
        state["fitted"][optimizer] = {key: value.cpu() for key, value in linear.state_dict().items()}
    seconds = time.perf_counter() - started
    return Trained(states={"model": state}, seconds=seconds, device=device.type, summary={"epochs": lesson.epochs},
                   history=[dict(zip(state["curves"], losses)) for losses in zip(*state["curves"].values())],
                   curves={optimizer: f"train/loss/{optimizer}" for optimizer in state["curves"]})


def linear_from(weights: dict[str, torch.Tensor]) -> nn.Linear:
    linear = nn.Linear(1, 1)
    linear.load_state_dict(weights)
    return linear


def curves_over(lesson: LinearFitLesson, lines: dict[str, nn.Linear], x: torch.Tensor) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each optimiser's predictions over the inputs ``x``, as arrays to draw."""
    x = x.view(-1, 1)
    return {name: (x.flatten().numpy(), predict(lesson, linear, x).flatten().numpy()) for name, linear in lines.items()}


def evaluate(lesson: LinearFitLesson, *, name: str, data: Prepared, device: torch.device,
             saved: Saved) -> Evaluated:
    points = point_set(data, lesson.points, f"lessons.{name}.points")
    state = saved.states["model"]
    lines = {optimizer: linear_from(weights) for optimizer, weights in state["fitted"].items()}
    at = torch.tensor([[lesson.predict_at]])
    metrics: dict[str, Any] = {}
    for optimizer, linear in lines.items():
        with torch.no_grad():
            final_loss = loss_of(lesson, linear, points["x"], points["y"]).item()
        metrics[optimizer] = {"w": round(linear.weight.item(), 6), "b": round(linear.bias.item(), 6),
                              "final_loss": round(final_loss, 6),
                              f"prediction_x{lesson.predict_at:g}": round(predict(lesson, linear, at).item(), 6)}
    trained = saved.metrics
    first = lesson.optimizers[0]  # headline numbers at the top: the first optimiser listed
    metrics = {**metrics[first], "headline_run": first, **metrics}
    metrics.update(initial={"w": round(state["initial"]["weight"].item(), 6),
                            "b": round(state["initial"]["bias"].item(), 6)}, epochs=trained["epochs"],
                   **carried_facts(trained), reference=lesson.reference)
    images = {"loss_curves.png": curve_panels(
        state["curves"], f"{name}: loss per epoch (same initial weights)",
        ylabel=f"{'BCE' if lesson.output == 'sigmoid' else 'MSE'} ({lesson.reduction})")}
    if lesson.output == "sigmoid":  # 002 §7: probability of passing over the hours, the 0.5 decision line in red
        images["probability_curve.png"] = fitted_curves(
            curves_over(lesson, lines, torch.linspace(*lesson.curve_range, CURVE_POINTS)),
            f"{name}: probability of pass", xlabel="Hours", ylabel="Probability of Pass", level=0.5)
    else:  # 000 draws the line as predicted points; here it runs over the points' range
        x, y = points["x"].flatten(), points["y"].flatten()
        images["fitted_line.png"] = fitted_curves(
            curves_over(lesson, lines, torch.linspace(float(x.min()), float(x.max()), CURVE_POINTS)),
            f"{name}: fitted line ({lesson.points})", points={"data": (x.numpy(), y.numpy())})
    fitted = {optimizer: predict(lesson, linear, points["x"]).numpy() for optimizer, linear in lines.items()}
    return Evaluated(metrics, images,
                     arrays={"predictions.npz": {"x": points["x"].numpy(), "y": points["y"].numpy(), **fitted}})
