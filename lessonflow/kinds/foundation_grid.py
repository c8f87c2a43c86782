"""The ``foundation_grid`` lesson kind: fit a line by trying every weight on a grid (``fit-grid-search``).

The seed's first model: no training at all, just the mean squared error of y = w·x
for every w of ``np.arange(*w_range)`` (the curve whose minimum is the answer), then
of y = w·x + b over a meshgrid of (w, b) (the 3-D loss surface). ``train`` computes
the grids and keeps them in ``models/<id>/model.pt``; ``evaluate`` reads off the
minima, predicts at ``predict_at`` and draws both pictures.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from pydantic import Field, model_validator

from lessonflow.contract import Checkpoint, Evaluated, Prepared, Saved, Trained
from lessonflow.datasets.toy import point_set
from lessonflow.figures import loss_surface, minimum_curve
from lessonflow.records import carried_facts
from lessonflow.schema import LessonBase, Strict


class GridRange(Strict):
    """``np.arange(start, stop, step)``, as the seed writes it."""

    start: float
    stop: float
    step: float = Field(gt=0)

    @model_validator(mode="after")
    def _not_empty(self) -> GridRange:
        if self.stop <= self.start:
            raise ValueError(f"stop ({self.stop}) must be above start ({self.start})")
        return self

    def values(self) -> np.ndarray:
        return np.arange(self.start, self.stop, self.step)


class GridSearchLesson(LessonBase):
    line_points: str = "linear"       # point set for y = w·x
    surface_points: str = "affine"    # point set for y = w·x + b
    w_range: GridRange = GridRange(start=0.0, stop=4.1, step=0.1)
    b_range: GridRange = GridRange(start=0.0, stop=4.1, step=0.1)
    predict_at: float = 4.0


def columns(points: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """In float64, as the seed's Python floats are."""
    return points["x"].double().flatten().numpy(), points["y"].double().flatten().numpy()


def mse_grid(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean squared error of y = w·x + b for every (w, b) pair, broadcast over the points (last axis)."""
    return ((w[..., None] * x + b[..., None] - y) ** 2).mean(-1)


Lesson = GridSearchLesson


def train(lesson: GridSearchLesson, *, name: str, data: Prepared, device: torch.device,
          checkpoint: Checkpoint) -> Trained:
    started = time.perf_counter()
    x, y = columns(point_set(data, lesson.line_points, f"lessons.{name}.line_points"))
    ws = lesson.w_range.values()
    line_mse = mse_grid(x, y, ws, np.zeros_like(ws))
    sx, sy = columns(point_set(data, lesson.surface_points, f"lessons.{name}.surface_points"))
    surface_w, surface_b = np.meshgrid(ws, lesson.b_range.values())
    surface_mse = mse_grid(sx, sy, surface_w, surface_b)
    seconds = time.perf_counter() - started
    grids = {"w": ws, "line_mse": line_mse, "surface_w": surface_w, "surface_b": surface_b,
             "surface_mse": surface_mse}
    return Trained(states={"model": {grid: torch.from_numpy(values) for grid, values in grids.items()}},
                   seconds=seconds, device="cpu", summary={"grid_points": int(line_mse.size + surface_mse.size)},
                   history=[{"mse": value} for value in line_mse.tolist()], curves={"mse": "train/mse_by_w_index"})


def evaluate(lesson: GridSearchLesson, *, name: str, data: Prepared, device: torch.device,
             saved: Saved) -> Evaluated:
    grids = {grid: values.numpy() for grid, values in saved.states["model"].items()}
    best = int(grids["line_mse"].argmin())
    w = float(grids["w"][best])
    row, column = np.unravel_index(grids["surface_mse"].argmin(), grids["surface_mse"].shape)
    sw, sb = float(grids["surface_w"][row, column]), float(grids["surface_b"][row, column])
    key = f"prediction_x{lesson.predict_at:g}"
    trained = saved.metrics
    metrics = {
        "w": round(w, 6), "final_loss": round(float(grids["line_mse"][best]), 6),
        key: round(w * lesson.predict_at, 6),
        "surface": {"w": round(sw, 6), "b": round(sb, 6),
                    "final_loss": round(float(grids["surface_mse"][row, column]), 6),
                    key: round(sw * lesson.predict_at + sb, 6)},
        "grid_points": trained["grid_points"], **carried_facts(trained), "reference": lesson.reference,
    }
    return Evaluated(metrics, images={
        "loss_over_w.png": minimum_curve(
            grids["w"], grids["line_mse"], f"{name}: MSE of y = w·x ({lesson.line_points})", "w", "Loss (MSE)"),
        "loss_surface.png": loss_surface(
            grids["surface_w"], grids["surface_b"], grids["surface_mse"],
            f"{name}: MSE of y = w·x + b ({lesson.surface_points})"),
    }, arrays={"loss_over_w.npz": {"w": grids["w"], "mse": grids["line_mse"]}})
