"""A fast CIFAR-10 recipe after airbench94 (Keller Jordan, github.com/KellerJordan/cifar10-airbench).

Beyond the tutorial, whose ResNet needs 80 GPU epochs: the ``airbench`` net of ``lessonflow.zoo``
in a few epochs, what makes CIFAR-10 feasible on a small CPU. From airbench94: a fixed first layer
whitening 2x2 patches, batch norm with a frozen scale and boosted shift learning rate, label
smoothing, Nesterov SGD with warm-up and decay per step, Lookahead, flip + translate of the training
batches only, and test-time averaging over flips (and 1-pixel shifts at ``tta: 2``). It trains
through ``training.run_epochs``, so it checkpoints and resumes like every other lesson.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from lessonflow.contract import Checkpoint
from lessonflow.schema import Strict
from lessonflow.training import History, descend, run_epochs
from lessonflow.zoo import AirbenchNet, FrozenScaleBatchNorm

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
EVAL_BATCH = 1000


class Recipe(Strict):
    """airbench94's hyper-parameters in its decoupled form (lr and weight decay per 1 024 examples)."""

    epochs: int = Field(10, gt=0)
    batch_size: int = Field(1024, gt=0)
    lr: float = Field(11.5, gt=0)
    momentum: float = Field(0.85, ge=0, lt=1)
    weight_decay: float = Field(0.0153, ge=0)
    bias_scaler: float = Field(64.0, gt=0)
    label_smoothing: float = Field(0.2, ge=0, lt=1)
    whiten_bias_epochs: int = Field(3, ge=0)
    translate: int = Field(2, ge=0)
    warmup: float = Field(0.23, ge=0, lt=1)
    tta: int = Field(2, ge=0, le=2, description="0: none, 1: + mirror, 2: + mirror and 1-pixel translations")
    channels_last: bool = True
    seed: int = 0


def normalized(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float, standardised per channel with CIFAR-10's statistics."""
    return (x.float().div_(255.0) - MEAN.to(x.device)) / STD.to(x.device)


def flip_translate(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Mirror a random half of the batch and shift each image by up to ``pad`` pixels (reflect-padded).

    One gather over the whole batch: no per-image work. Draws come from the global generator,
    which ``run_epochs`` checkpoints, so a resumed run draws what an uninterrupted one would.
    """
    n, _, h, w = x.shape
    flip = (torch.rand(n) < 0.5).to(x.device)
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    if pad == 0:
        return x
    padded = F.pad(x, (pad,) * 4, mode="reflect")
    top, left = torch.randint(2 * pad + 1, (2, n, 1, 1)).to(x.device)
    rows = (top + torch.arange(h, device=x.device).view(1, h, 1)).expand(n, h, w)
    cols = (left + torch.arange(w, device=x.device).view(1, 1, w)).expand(n, h, w)
    flat = (rows * padded.shape[3] + cols).view(n, 1, h * w).expand(-1, x.shape[1], -1)
    return padded.flatten(2).gather(2, flat).view_as(x)


@torch.no_grad()
def tta_logits(model: nn.Module, x: torch.Tensor, level: int, channels_last: bool) -> torch.Tensor:
    """Logits of normalised images ``x``, averaged over the flipped view (level >= 1) and the
    up-left / down-right 1-pixel shifts of both (level 2), weighted as airbench94 does."""
    def run(batch):
        return model(batch.contiguous(memory_format=torch.channels_last) if channels_last else batch)

    def mirrored(batch):
        return 0.5 * (run(batch) + run(batch.flip(3))) if level >= 1 else run(batch)

    logits = mirrored(x)
    if level >= 2:
        padded = F.pad(x, (1,) * 4, mode="reflect")
        shifted = [mirrored(padded[:, :, :-2, :-2]), mirrored(padded[:, :, 2:, 2:])]
        logits = 0.5 * logits + 0.25 * (shifted[0] + shifted[1])
    return logits


def predict(model: nn.Module, x: torch.Tensor, level: int, channels_last: bool,
            device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """Logits of uint8 images ``x`` averaged over the views of ``level``, on the CPU; no random augmentation."""
    model.eval()
    return torch.cat([tta_logits(model, normalized(chunk.to(device)), level, channels_last).float().cpu()
                      for chunk in x.split(EVAL_BATCH)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, level: int, channels_last: bool,
             device: torch.device = torch.device("cpu")) -> float:
    return (predict(model, x, level, channels_last, device).argmax(1) == y).float().mean().item()


class Lookahead:
    """An exponential average of the weights (and BN statistics) that the net is reset to every few steps."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.average = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, decay: float) -> None:
        state = self.model.state_dict()
        for name, average in self.average.items():
            average.lerp_(state[name], 1 - decay)
            state[name].copy_(average)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.average

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, value in state.items():
            self.average[name].copy_(value)


def optimizer_for(model: nn.Module, recipe: Recipe) -> torch.optim.SGD:
    """Nesterov SGD, airbench94's decoupled lr/wd turned into PyTorch's; batch-norm shifts at ``bias_scaler`` x lr."""
    kilostep = 1024 * (1 + 1 / (1 - recipe.momentum))
    lr = recipe.lr / kilostep
    wd = recipe.weight_decay * recipe.batch_size / kilostep
    shifts = [p for m in model.modules() if isinstance(m, FrozenScaleBatchNorm) for p in [m.bias]]
    shift_ids = {id(p) for p in shifts}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in shift_ids]
    lr_shifts = lr * recipe.bias_scaler
    return torch.optim.SGD([dict(params=shifts, lr=lr_shifts, weight_decay=wd / lr_shifts),
                            dict(params=others, lr=lr, weight_decay=wd / lr)],
                           momentum=recipe.momentum, nesterov=True)


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear from 0.2 to 1 over the first ``warmup`` of the steps, then down to 0.07 at the end."""
    warm = max(1, int(total * warmup))
    if step < warm:
        return 0.2 + 0.8 * step / warm
    return 1.0 - 0.93 * (step - warm) / max(1, total - warm)


def train_fast(model: AirbenchNet, x_train: torch.Tensor, y_train: torch.Tensor, recipe: Recipe, *,
               checkpoint: Checkpoint, device: torch.device = torch.device("cpu"),
               after_epoch=dict, progress: bool = True) -> History:
    """Train ``model`` (uint8 ``x_train``) with the recipe through ``run_epochs``.

    ``after_epoch`` adds the epoch's evaluation figures (``run_epochs`` times it apart).
    """
    torch.manual_seed(recipe.seed)
    model.to(device)
    x_train, y_train = x_train.to(device), y_train.to(device)
    model.whiten(normalized(x_train[:5000]))
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = optimizer_for(model, recipe)
    steps_per_epoch = math.ceil(len(y_train) / recipe.batch_size)
    total = steps_per_epoch * recipe.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, recipe.warmup))
    lookahead = Lookahead(model)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing, reduction="sum")

    def step(index: torch.Tensor) -> dict[str, torch.Tensor]:
        done = scheduler.last_epoch  # steps taken so far, restored with the scheduler on resume
        model.whitening.bias.requires_grad = done < recipe.whiten_bias_epochs * steps_per_epoch
        inputs = flip_translate(normalized(x_train[index]), recipe.translate)
        if recipe.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        targets = y_train[index]
        logits = model(inputs)
        loss = loss_fn(logits, targets)
        descend(loss, optimizer, scheduler)
        taken = done + 1
        if taken % 5 == 0 or taken == total:
            lookahead.update(1.0 if taken == total else 0.95 ** 5 * (taken / total) ** 3)
        return {"train_loss": loss.detach(), "train_accuracy": (logits.argmax(1) == targets).sum()}

    return run_epochs({"model": model, "optimizer": optimizer, "scheduler": scheduler, "lookahead": lookahead},
                      step, epochs=recipe.epochs, n_train=len(y_train), batch_size=recipe.batch_size,
                      seed=recipe.seed, device=device, checkpoint=checkpoint, after_epoch=after_epoch, progress=progress)

