"""The one training loop every torch lesson uses: batches by indexing, checkpoints, resume, NaN stop.

The data stays a uint8 tensor on the training device and batches are taken by indexing, so no
per-sample Python or ``ToTensor`` work happens in the loop. Each epoch's shuffle has its own seeded
generator and each epoch ends in a checkpoint of every state, RNG included, so a killed run resumes
to exactly the weights of an uninterrupted one; the train stage deletes the checkpoint once the model
is saved, so a forced run trains again. A non-finite loss stops the run before anything is written.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn
from tqdm import tqdm

from lessonflow import accel as fast
from lessonflow.atomic import atomic_path
from lessonflow.contract import Checkpoint
from lessonflow.errors import DivergedError
from lessonflow.schema import Augmentation, LessonBase, ModelParams, OptimizerParams, ParamsError, ScheduleName, Strict
from lessonflow.zoo import check_model_args

GPU_EVAL_BATCH, CPU_EVAL_BATCH = 4096, 512


class Training(Strict):
    """A model trained by gradient descent in epochs of mini-batches: a lesson's, or a helper model's."""

    model: ModelParams
    optimizer: OptimizerParams
    schedule: ScheduleName = "constant"
    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=0)

    @model_validator(mode="after")
    def _model_exists(self) -> Training:
        try:
            check_model_args(self.model.name, self.model.kwargs())
        except ValueError as err:
            raise ParamsError(f"model.{err}") from None
        return self


class TrainedLesson(Training, LessonBase):
    """A lesson trained by gradient descent in epochs of mini-batches."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "constant"
    normalize: Normalize | None = None
    seed: int = 0
    augment: Augmentation | None = None
    compile: bool = False  # torch.compile the model (GPU runs; see lessonflow/accel.py)
    deterministic: bool = True  # False lets a GPU run autotune cuDNN (CPU runs are always deterministic)

    @classmethod
    def of(cls, lesson: Any, **extra: Any) -> TrainConfig:
        """The settings of a ``TrainedLesson`` params entry; ``extra`` adds the kind's own (normalize …)."""
        opt = lesson.optimizer
        return cls(epochs=lesson.epochs, batch_size=lesson.batch_size, optimizer=opt.name, lr=opt.lr,
                   momentum=opt.momentum, weight_decay=opt.weight_decay, schedule=lesson.schedule,
                   seed=lesson.seed, **extra)


@dataclass
class History:
    """Per-epoch records plus what is needed to resume; it travels inside the checkpoint."""

    epochs: list[dict[str, float]] = field(default_factory=list)

    @property
    def train_seconds(self) -> float:
        return sum(e["seconds"] for e in self.epochs)


def to_inputs(x: torch.Tensor, normalize: Normalize | None) -> torch.Tensor:
    """uint8 pixels -> float in [0, 1] (float features, e.g. tabular rows, are copied as they are),
    then the lesson's (mean, std) normalisation if it has one, per channel when it gives three of each."""
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float32, copy=True)
    if normalize is not None:
        mean, std = normalize
        if isinstance(mean, tuple):
            mean, std = (torch.tensor(value, device=x.device).view(-1, 1, 1) for value in (mean, std))
        x = x.sub_(mean).div_(std)
    return x


def augment_batch(x: torch.Tensor, augment: Augmentation) -> torch.Tensor:
    """Apply ``augment`` to a whole float batch at once, on its own device (no per-image PIL work).

    The random draws come from the global CPU generator: ``make_deterministic`` seeds it and
    every checkpoint stores its state, so CPU runs are bit-reproducible and a resumed run
    draws exactly what an uninterrupted one would have.
    """
    n, channels, height, width = x.shape
    if augment.resize is not None:
        if augment.resize < min(height, width):
            raise ValueError(f"augment.resize: {augment.resize} is smaller than the {height}x{width} images; "
                             f"it must be at least {min(height, width)}")
        scale = augment.resize / min(height, width)
        big = F.interpolate(x, size=(round(height * scale), round(width * scale)), mode="bilinear",
                            align_corners=False)
        top = torch.randint(big.shape[2] - height + 1, (n, 1, 1, 1)).to(x.device)
        left = torch.randint(big.shape[3] - width + 1, (n, 1, 1, 1)).to(x.device)
        rows = top + torch.arange(height, device=x.device).view(1, 1, height, 1)
        cols = left + torch.arange(width, device=x.device).view(1, 1, 1, width)
        x = big[torch.arange(n, device=x.device).view(n, 1, 1, 1),
                torch.arange(channels, device=x.device).view(1, channels, 1, 1), rows, cols]
    if augment.hflip:
        flip = (torch.rand(n) < 0.5).to(x.device).view(n, 1, 1, 1)
        x = torch.where(flip, x.flip(3), x)
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


def descend(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler=None) -> None:
    """One gradient step on ``loss`` for the parameters ``optimizer`` holds (and one scheduler tick)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> Iterator[torch.Tensor]:
    """The shuffle of epoch ``epoch`` depends only on (seed, epoch), never on how many epochs ran before."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator)
    yield from order.split(batch_size)


def eval_batch_size(device: torch.device) -> int:
    """Rows per forward pass when only predicting: large batches keep a GPU busy, but on a CPU a
    512-row chunk keeps its activations in cache and runs faster than large ones (BENCHMARKS.md)."""
    return CPU_EVAL_BATCH if device.type == "cpu" else GPU_EVAL_BATCH


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, normalize, device: torch.device) -> torch.Tensor:
    model.eval()
    chunks = x.split(eval_batch_size(device))
    outputs = [model(to_inputs(chunk.to(device), normalize)).float().cpu() for chunk in chunks]
    return torch.cat(outputs)


def score(model: nn.Module, x: torch.Tensor, y: torch.Tensor, normalize, device) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over a whole split."""
    logits = predict_logits(model, x, normalize, device)
    loss = nn.functional.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(1) == y).float().mean().item()
    return loss, accuracy


def load_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """A checkpoint is only resumed from when it was made by the same params, data, code and device type.

    Any other checkpoint (or one that cannot be read) is ignored, saying so, and the run starts
    from epoch 1: resuming it would mix two different trainings into one model.
    """
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - whatever is wrong with it, training from scratch is the fix
        tqdm.write(f"{path}: unreadable checkpoint ({err}); training from epoch 1")
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        tqdm.write(f"{path}: made with other params, data, code or device; training from epoch 1")
        return None
    return state


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


class BestWeights:
    """The weights of the epoch with the lowest validation loss so far.

    Handed to ``run_epochs`` as one of its ``parts``, it travels inside the checkpoint, so a resumed
    run keeps comparing against the epoch it had kept, and the test period never chooses the weights.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.epochs_seen, self.epoch, self.val_loss = 0, 0, math.inf
        self.weights: dict[str, torch.Tensor] | None = None

    def observe(self, val_loss: float) -> None:
        """Called once per epoch with its validation loss: keeps a copy of the weights if it is the best."""
        self.epochs_seen += 1
        if val_loss < self.val_loss:
            self.epoch, self.val_loss = self.epochs_seen, val_loss
            self.weights = copy.deepcopy(self.model.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {"epochs_seen": self.epochs_seen, "epoch": self.epoch, "val_loss": self.val_loss,
                "weights": self.weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epochs_seen, self.epoch, self.val_loss, self.weights = (
            state["epochs_seen"], state["epoch"], state["val_loss"], state["weights"])


Step = Callable[[torch.Tensor], dict[str, torch.Tensor]]


def run_epochs(parts: dict[str, Any], step: Step, *, epochs: int, n_train: int, batch_size: int, seed: int,
               device: torch.device, checkpoint: Checkpoint, after_epoch: Callable[[], dict[str, float]] = dict, progress: bool = True) -> History:
    """The epoch loop every trained lesson kind shares, whatever it optimises.

    ``parts`` are the stateful objects a checkpoint holds, by name (models, optimisers,
    schedulers); ``step(index)`` runs one optimisation step on the training rows ``index``
    and returns the batch's per-sample *sums*, averaged over the epoch into the record;
    ``after_epoch()`` adds the epoch's validation figures (its time is recorded as ``eval_seconds``,
    within the epoch's ``seconds``). Every returned value is watched for NaN, and the run resumes
    from ``checkpoint`` when it matches its fingerprint (the train stage deletes it once the model is saved).
    """
    steps_per_epoch = math.ceil(n_train / batch_size)
    history = History()
    label = checkpoint.label
    fingerprint = f"{checkpoint.fingerprint}:{device.type}"  # a CUDA run's state must not continue on the CPU, or back
    resumed = load_checkpoint(checkpoint.path, fingerprint)
    if resumed is not None:
        for name, part in parts.items():
            part.load_state_dict(resumed[name])
        torch.set_rng_state(resumed["rng"])
        history.epochs = resumed["history"]
        if history.epochs:
            tqdm.write(f"{label}: resuming after epoch {len(history.epochs)} of {epochs}")

    check_every = 1 if device.type == "cpu" else 25
    epochs_bar = tqdm(range(len(history.epochs), epochs), initial=len(history.epochs), total=epochs,
                      desc=label, unit="epoch", disable=not progress)
    for epoch in epochs_bar:
        for part in parts.values():
            if isinstance(part, nn.Module):
                part.train()
        started = time.perf_counter()
        totals: dict[str, torch.Tensor] = {}
        steps = tqdm(epoch_batches(n_train, batch_size, seed, epoch), total=steps_per_epoch,
                     desc=f"epoch {epoch + 1}", unit="batch", leave=False, delay=1.0, disable=not progress)
        for number, index in enumerate(steps, start=1):
            sums = step(index.to(device))
            for name, value in sums.items():
                totals[name] = totals.get(name, 0) + value
            if number % check_every == 0 or number == steps_per_epoch:
                values = {name: value.item() / len(index) for name, value in sums.items()}
                bad = {name: value for name, value in values.items() if not math.isfinite(value)}
                if bad:
                    name, value = next(iter(bad.items()))
                    raise DivergedError(f"{label}: loss became {value} at epoch {epoch + 1}, step {number} ({name}); "
                                        "lower the learning rate. Previous results were left untouched.")
                if number % 50 == 0:
                    steps.set_postfix({name: f"{value:.4f}" for name, value in values.items()})
        record = {"epoch": epoch + 1, **{name: total.item() / n_train for name, total in totals.items()}}
        evaluated = time.perf_counter()
        record.update(after_epoch())
        record["eval_seconds"] = time.perf_counter() - evaluated  # so a benchmark can time the training alone
        record["seconds"] = time.perf_counter() - started
        history.epochs.append(record)
        epochs_bar.set_postfix({name: f"{value:.4f}" for name, value in record.items()
                                if name not in ("epoch", "eval_seconds")})
        save_checkpoint(checkpoint.path, {"fingerprint": fingerprint, **{name: part.state_dict() for name, part in parts.items()},
                                     "rng": torch.get_rng_state(), "history": history.epochs})
    return history


def train_classifier(model: nn.Module, data: dict[str, torch.Tensor], cfg: TrainConfig, *,
                     device: torch.device, checkpoint: Checkpoint, progress: bool = True) -> History:
    """Train ``model`` in place with cross-entropy; resume from ``checkpoint`` when it matches its fingerprint.

    Each epoch ends with a pass over the validation split when ``data`` has one.
    """
    model.to(device)
    plan = fast.plan_for(device, image_inputs=data["x_train"].dim() == 4, deterministic=cfg.deterministic,
                         compile_requested=cfg.compile)
    forward = fast.apply(plan, model)
    x_train, y_train = data["x_train"].to(device), data["y_train"].to(device)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, math.ceil(len(y_train) / cfg.batch_size))
    loss_fn = nn.CrossEntropyLoss()

    def step(index: torch.Tensor) -> dict[str, torch.Tensor]:
        targets = y_train[index]
        inputs = to_inputs(x_train[index], cfg.normalize)
        if cfg.augment is not None:
            inputs = augment_batch(inputs, cfg.augment)
        with fast.autocast(plan):
            logits = forward(fast.prepare_batch(plan, inputs))
            loss = loss_fn(logits, targets)
        descend(loss, optimizer, scheduler)
        return {"train_loss": loss.detach() * len(index), "train_accuracy": (logits.argmax(1) == targets).sum()}

    def validate() -> dict[str, float]:
        val_loss, val_accuracy = score(model, data["x_val"], data["y_val"], cfg.normalize, device)
        return {"val_loss": val_loss, "val_accuracy": val_accuracy}

    return run_epochs({"model": model, "optimizer": optimizer, "scheduler": scheduler}, step, epochs=cfg.epochs,
                      n_train=len(y_train), batch_size=cfg.batch_size, seed=cfg.seed, device=device,
                      checkpoint=checkpoint, after_epoch=validate if "x_val" in data else dict,
                      progress=progress)
