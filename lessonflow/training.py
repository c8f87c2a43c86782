"""The one training loop every classifier lesson uses.

Why it looks the way it does:

* the data stays a uint8 tensor (on the training device) and batches are taken by
  indexing, so no per-sample Python, PIL or ``ToTensor`` work happens in the loop;
* each epoch's shuffle comes from its own seeded generator and every epoch ends in a
  checkpoint holding model, optimiser, scheduler and RNG states, so a killed run
  resumed from the checkpoint ends with exactly the weights of an uninterrupted one;
* a non-finite loss stops the run with the lesson, epoch and step in the message,
  before anything is written over the previous results.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from lessonflow.atomic import atomic_path

EVAL_BATCH = 4096
THREADS_ENV = "LESSONFLOW_THREADS"


class DivergedError(RuntimeError):
    """The loss became NaN or infinite; continuing would only write garbage."""


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` prefers CUDA, then Apple's MPS, then the CPU; an explicit request that cannot be met is an error."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
        "cpu": True,
    }
    if requested == "auto":
        return torch.device(next(name for name, ok in available.items() if ok))
    if not available.get(requested, False):
        raise RuntimeError(f"device: {requested!r} was requested but is not available on this machine")
    return torch.device(requested)


def make_deterministic(seed: int) -> None:
    """Same seed, data and params on the CPU must give bit-identical weights.

    ``LESSONFLOW_THREADS`` caps the CPU threads so that stages run side by side do not
    oversubscribe the cores; it is an execution setting, not a param.
    """
    threads = int(os.environ.get(THREADS_ENV) or 0)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"
    normalize: tuple[float, float] | None = None
    seed: int = 0


@dataclass
class History:
    """Per-epoch records plus what is needed to resume; it travels inside the checkpoint."""

    epochs: list[dict[str, float]] = field(default_factory=list)

    @property
    def train_seconds(self) -> float:
        return sum(e["seconds"] for e in self.epochs)


def to_inputs(x: torch.Tensor, normalize: tuple[float, float] | None) -> torch.Tensor:
    """uint8 pixels -> float in [0, 1], then the lesson's (mean, std) normalisation if it has one."""
    x = x.float().div_(255.0)
    if normalize is not None:
        mean, std = normalize
        x = x.sub_(mean).div_(std)
    return x


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamax":
        return torch.optim.Adamax(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rprop":
        return torch.optim.Rprop(params, lr=cfg.lr)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, epochs=cfg.epochs,
                                                   steps_per_epoch=steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> Iterator[torch.Tensor]:
    """The shuffle of epoch ``epoch`` depends only on (seed, epoch), never on how many epochs ran before."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator)
    yield from order.split(batch_size)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, normalize, device: torch.device) -> torch.Tensor:
    model.eval()
    outputs = [model(to_inputs(chunk.to(device), normalize)).float().cpu() for chunk in x.split(EVAL_BATCH)]
    return torch.cat(outputs)


def score(model: nn.Module, x: torch.Tensor, y: torch.Tensor, normalize, device) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over a whole split."""
    logits = predict_logits(model, x, normalize, device)
    loss = nn.functional.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(1) == y).float().mean().item()
    return loss, accuracy


def load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """A checkpoint is only resumed from when it was made by the same params, data and code."""
    if not path.is_file():
        return None
    state = torch.load(path, weights_only=False)
    return state if state.get("fingerprint") == fingerprint else None


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train_classifier(model: nn.Module, data: dict[str, torch.Tensor], cfg: TrainConfig, *,
                     device: torch.device, checkpoint: Path, fingerprint: str, label: str,
                     progress: bool = True) -> History:
    """Train ``model`` in place; resume from ``checkpoint`` when it matches ``fingerprint``."""
    model.to(device)
    x_train, y_train = data["x_train"].to(device), data["y_train"].to(device)
    steps_per_epoch = math.ceil(len(y_train) / cfg.batch_size)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    history = History()

    resumed = load_checkpoint(checkpoint, fingerprint)
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        torch.set_rng_state(resumed["rng"])
        history.epochs = resumed["history"]
        if history.epochs:
            tqdm.write(f"{label}: resuming after epoch {len(history.epochs)} of {cfg.epochs}")

    check_every = 1 if device.type == "cpu" else 25
    epochs_bar = tqdm(range(len(history.epochs), cfg.epochs), initial=len(history.epochs), total=cfg.epochs,
                      desc=label, unit="epoch", disable=not progress)
    for epoch in epochs_bar:
        model.train()
        started = time.perf_counter()
        total_loss = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        steps = tqdm(epoch_batches(len(y_train), cfg.batch_size, cfg.seed, epoch), total=steps_per_epoch,
                     desc=f"epoch {epoch + 1}", unit="batch", leave=False, delay=1.0, disable=not progress)
        for step, index in enumerate(steps, start=1):
            index = index.to(device)
            targets = y_train[index]
            logits = model(to_inputs(x_train[index], cfg.normalize))
            loss = loss_fn(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.detach() * len(index)
            correct += (logits.argmax(1) == targets).sum()
            if step % check_every == 0 or step == steps_per_epoch:
                value = loss.item()
                if not math.isfinite(value):
                    raise DivergedError(f"{label}: loss became {value} at epoch {epoch + 1}, step {step}; "
                                        "lower the learning rate. Previous results were left untouched.")
                if step % 50 == 0:
                    steps.set_postfix(loss=f"{value:.4f}")
        train_loss = total_loss.item() / len(y_train)
        train_accuracy = correct.item() / len(y_train)
        val_loss, val_accuracy = score(model, data["x_val"], data["y_val"], cfg.normalize, device)
        record = {"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_accuracy,
                  "val_loss": val_loss, "val_accuracy": val_accuracy,
                  "seconds": time.perf_counter() - started}
        history.epochs.append(record)
        epochs_bar.set_postfix(loss=f"{train_loss:.4f}", val_acc=f"{val_accuracy:.4f}")
        save_checkpoint(checkpoint, {
            "fingerprint": fingerprint, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "history": history.epochs,
        })
    return history
