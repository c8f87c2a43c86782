"""The ``stock`` lesson kind: next-day close or up/down from a window of past days (001 §13).

The seed reported its training loss on 100 rows; here every model is judged on a later test period
beside the forecast it must beat, *persistence* for prices and *always up* for direction, and the
metrics say whether it did. A price model outputs tomorrow's change from today's close: fed scaled
levels, a network cannot output levels above every train day, as the test years are. The loss
follows the target (MSE on the change, cross-entropy on logits for up/down, where the seed used MSE
on 0/1), and the weights kept are the lowest-validation-loss epoch's, so the test period chooses nothing.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from lessonflow.contract import Checkpoint, Evaluated, Prepared, Saved, Trained
from lessonflow.figures import direction_forecast, price_forecast
from lessonflow.records import carried_facts
from lessonflow.training import (
    BestWeights, History, TrainConfig, TrainedLesson, descend, eval_batch_size, make_optimizer, make_scheduler,
    run_epochs,
)
from lessonflow.zoo import build_model, restored

CURVES = {"train_loss": "train/loss", "val_loss": "val/loss"}
ZOOM_DAYS = 60
# A model "beats" a baseline only by more than these margins: a 0.1 % lower RMSE over a few
# hundred days is noise, and the plain-language verdict must not call it a win.
RMSE_MARGIN = 0.01       # relative
ACCURACY_MARGIN = 0.01   # absolute (one percentage point)


class StockLesson(TrainedLesson):
    """A model of the next trading day from the ``window`` days before it."""

    target: Literal["close", "updown"] = "close"
    window: int = Field(10, gt=0, description="past days per input; at most datasets.<name>.options.window")


def inputs(lesson: StockLesson, data: Prepared, split: str) -> torch.Tensor:
    """The lesson's last ``window`` days of the prepared (longer) windows."""
    available = data["window"]
    if lesson.window > available:
        raise ValueError(f"window: {lesson.window} days asked for, but {lesson.dataset} was prepared with "
                         f"windows of {available}; raise datasets.{lesson.dataset}.options.window")
    return data[f"x_{split}"][:, -lesson.window:]


def change_scale(data: Prepared) -> float:
    """The typical size of a day's change, from the train days only."""
    return (data["y_train"] - data["last_close_train"]).std().item()


def targets(lesson: StockLesson, data: Prepared, split: str) -> torch.Tensor:
    """What the network is fitted to: tomorrow's scaled change from today's close, or 1.0 for a rise."""
    if lesson.target == "updown":
        return data[f"up_{split}"].float()
    return ((data[f"y_{split}"] - data[f"last_close_{split}"]) / change_scale(data)).float()


def forecast_close(outputs: torch.Tensor, data: Prepared, split: str) -> np.ndarray:
    """A price model's outputs as closes: today's close plus the predicted change."""
    return (data[f"last_close_{split}"] + outputs.double() * change_scale(data)).numpy()


def loss_function(lesson: StockLesson) -> nn.Module:
    return nn.BCEWithLogitsLoss() if lesson.target == "updown" else nn.MSELoss()


def build_for(lesson: StockLesson, data: Prepared) -> nn.Module:
    return build_model(lesson.model.name, lesson.model.kwargs(), in_shape=(lesson.window, len(data["features"])),
                       num_classes=1)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Raw outputs (scaled close or up-logit), one per sample, on the CPU."""
    model.eval()
    chunks = x.split(eval_batch_size(device))
    return torch.cat([model(chunk.to(device)).squeeze(-1).float().cpu() for chunk in chunks])


def train_net(model: nn.Module, lesson: StockLesson, data: Prepared, *, device: torch.device,
              checkpoint: Checkpoint) -> tuple[History, BestWeights]:
    """The shared epoch loop with this kind's loss, keeping the weights of the best validation epoch."""
    cfg = TrainConfig.of(lesson)
    model.to(device)
    x_train, y_train = inputs(lesson, data, "train").to(device), targets(lesson, data, "train").to(device)
    x_val, y_val = inputs(lesson, data, "val"), targets(lesson, data, "val")
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, math.ceil(len(y_train) / cfg.batch_size))
    loss_fn = loss_function(lesson)
    best = BestWeights(model)

    def step(index: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = loss_fn(model(x_train[index]).squeeze(-1), y_train[index])
        descend(loss, optimizer, scheduler)
        return {"train_loss": loss.detach().double() * len(index)}

    def validate() -> dict[str, float]:
        val_loss = loss_fn(predict(model, x_val, device), y_val).item()
        best.observe(val_loss)
        return {"val_loss": val_loss}

    history = run_epochs({"model": model, "optimizer": optimizer, "scheduler": scheduler, "best": best}, step,
                         epochs=cfg.epochs, n_train=len(y_train), batch_size=cfg.batch_size, seed=cfg.seed,
                         device=device, checkpoint=checkpoint, after_epoch=validate)
    return history, best


Lesson = StockLesson


def train(lesson: StockLesson, *, name: str, data: Prepared, device: torch.device,
          checkpoint: Checkpoint) -> Trained:
    model = build_for(lesson, data)
    history, best = train_net(model, lesson, data, device=device, checkpoint=checkpoint)
    return Trained(states={"model": {key: value.cpu() for key, value in best.weights.items()}},
                   seconds=history.train_seconds, device=device.type,
                   summary={"epochs": len(history.epochs), "best_epoch": best.epoch,
                            "best_val_loss": round(best.val_loss, 6)},
                   history=history.epochs, curves=CURVES, network=model)


def error_sizes(predicted: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    """(RMSE, MAE) in the prices' own units."""
    error = predicted - actual
    return float(np.sqrt(np.mean(error ** 2))), float(np.mean(np.abs(error)))


def judged(better: bool, tie: bool, baseline: str) -> str:
    """The verdict's opening words; ``tie``: within the margin, which counts as not beating it."""
    if tie:
        return f"no better than {baseline}"
    return f"beats {baseline}" if better else f"does not beat {baseline}"


def price_report(predicted: np.ndarray, actual: np.ndarray, persistence: np.ndarray) -> dict[str, Any]:
    """Errors beside persistence's. Beating it means a test RMSE more than ``RMSE_MARGIN`` lower."""
    rmse, mae = error_sizes(predicted, actual)
    base_rmse, base_mae = error_sizes(persistence, actual)
    ratio = rmse / base_rmse
    beats, tie = ratio < 1 - RMSE_MARGIN, abs(ratio - 1) <= RMSE_MARGIN
    verdict = (f"{judged(beats, tie, 'persistence')}: test RMSE {rmse:.2f} vs {base_rmse:.2f} for 'tomorrow "
               f"closes where today closed' ({ratio:.3f}x)")
    if not beats:
        verdict += "; the model adds nothing to repeating today's close"
    return {"test_rmse": round(rmse, 4), "test_mae": round(mae, 4),
            "persistence_rmse": round(base_rmse, 4), "persistence_mae": round(base_mae, 4),
            "rmse_vs_persistence": round(ratio, 4), "beats_persistence": bool(beats), "verdict": verdict}


def direction_report(probability_up: np.ndarray, rose: np.ndarray) -> dict[str, Any]:
    """Accuracy beside always-up's. Beating it means more than ``ACCURACY_MARGIN`` higher."""
    said_up = probability_up > 0.5
    accuracy = float(np.mean(said_up == rose.astype(bool)))
    always_up = float(np.mean(rose))
    beats, tie = accuracy > always_up + ACCURACY_MARGIN, abs(accuracy - always_up) <= ACCURACY_MARGIN
    verdict = (f"{judged(beats, tie, 'always-up')}: test accuracy {accuracy:.1%} vs {always_up:.1%} for "
               f"predicting a rise every day; the model said 'up' on {np.mean(said_up):.0%} of test days")
    return {"test_accuracy": round(accuracy, 6), "always_up_accuracy": round(always_up, 6),
            "beats_always_up": bool(beats), "predicted_up_fraction": round(float(np.mean(said_up)), 6),
            "verdict": verdict}


def evaluate(lesson: StockLesson, *, name: str, data: Prepared, device: torch.device, saved: Saved) -> Evaluated:
    model = restored(build_for(lesson, data), saved.states["model"], device)
    outputs = {split: predict(model, inputs(lesson, data, split), device) for split in ("val", "test")}
    val_loss = loss_function(lesson)(outputs["val"], targets(lesson, data, "val")).item()
    dates = np.array(data["dates_test"])
    title = f"{name} ({data['source']} data)"
    if lesson.target == "updown":
        probability = outputs["test"].sigmoid().numpy()
        rose = data["up_test"].numpy()
        report = direction_report(probability, rose)
        arrays = {"probability_up": probability, "rose": rose}
        figure = direction_forecast(dates, probability, rose, title)
    else:
        predicted = forecast_close(outputs["test"], data, "test")
        actual, persistence = data["y_test"].numpy(), data["last_close_test"].numpy()
        report = price_report(predicted, actual, persistence)
        arrays = {"predicted": predicted, "actual": actual, "persistence": persistence}
        figure = price_forecast(dates, actual, predicted, persistence, title, ZOOM_DAYS)
    trained = saved.metrics
    metrics = {
        **report, "val_loss": round(val_loss, 6), "target": lesson.target, "window": lesson.window,
        "test_days": len(dates), "test_start": str(dates[0]), "test_end": str(dates[-1]),
        "epochs": trained["epochs"], "best_epoch": trained["best_epoch"], **carried_facts(trained),
    }
    return Evaluated(metrics, images={"predicted_vs_actual.png": figure},
                     arrays={"predictions.npz": {"dates": dates, **arrays}})
