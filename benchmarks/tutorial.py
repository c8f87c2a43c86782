"""The tutorials' own training loops, rebuilt faithfully as the baseline lessonflow is timed against.

What makes them the tutorials' loops: ``torchvision.datasets.MNIST`` with a per-sample
``ToTensor`` (and ``Normalize`` where the tutorial has it), a shuffling ``DataLoader``, and each
tutorial's own evaluation cadence (``EVAL_CADENCE`` below). The model and hyper-parameters are the
lesson's (built by ``lessonflow.zoo``), so data handling and evaluation are the only differences.
"""

from __future__ import annotations

import gzip
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lessonflow.training import make_optimizer

EVAL_CADENCE = {  # (where, every): "steps" = every N steps on the test loader; "tensor" = every N steps, one tensor
    "mnist-logreg": ("end", 0),
    "mnist-ann": ("steps", 50),
    "mnist-mlp": ("epoch", 0),
    "mnist-cnn": ("epoch", 0),
    "mnist-cnn-book": ("tensor", 100),
    "mnist-inception": ("epoch", 0),
    "mnist-resnet": ("epoch", 0),
    "mnist-lstm": ("end", 0),
    "mnist-bilstm": ("end", 0),
}


def torchvision_root(mirror: Path, dest: Path) -> Path:
    """Lay the mirror's IDX files out the way ``torchvision.datasets.MNIST(root)`` reads them."""
    raw = dest / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for packed in (mirror / "mnist").glob("*-ubyte.gz"):
        target = raw / packed.name.removesuffix(".gz")
        if not target.exists():
            with gzip.open(packed) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out)
    return dest


@dataclass
class EpochTimes:
    """Seconds spent in one timed stretch of training, and how many steps and test passes it held."""

    data: float = 0.0
    compute: float = 0.0
    evaluation: float = 0.0
    steps: int = 0
    passes: int = 0


def loaders(root: Path, batch_size: int, normalize):
    from torchvision import datasets, transforms

    steps = [transforms.ToTensor()]
    if normalize is not None:
        steps.append(transforms.Normalize((normalize[0],), (normalize[1],)))
    transform = transforms.Compose(steps)
    train = datasets.MNIST(root=str(root), train=True, transform=transform, download=False)
    test = datasets.MNIST(root=str(root), train=False, transform=transform, download=False)
    return (torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True),
            torch.utils.data.DataLoader(test, batch_size=batch_size, shuffle=True), test)


@torch.no_grad()
def test_pass(model: nn.Module, test_loader) -> float:
    model.eval()
    correct = total = 0
    for images, labels in test_loader:
        correct += (model(images).argmax(1) == labels).sum().item()
        total += len(labels)
    model.train()
    return correct / total


def test_tensor(test_set, normalize) -> tuple[torch.Tensor, torch.Tensor]:
    """001 §7.6 builds the test inputs once, as one float tensor (``test_data.data``)."""
    x = test_set.data.unsqueeze(1).float() / 255.0
    if normalize is not None:
        x = (x - normalize[0]) / normalize[1]
    return x, test_set.targets


def train(lesson_id: str, model: nn.Module, cfg, root: Path, steps: int) -> tuple[EpochTimes, float]:
    """Train like the tutorial for ``steps`` steps of its first epoch; returns the time split and test accuracy.

    The tutorial's test passes happen where its cadence puts them; a pass it makes once per
    epoch (or once after training) is made once here, at the end of the stretch.
    """
    train_loader, test_loader, test_set = loaders(root, cfg.batch_size, cfg.normalize)
    where, every = EVAL_CADENCE[lesson_id]
    tensor = test_tensor(test_set, cfg.normalize) if where == "tensor" else None
    optimizer = make_optimizer(model, cfg)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    split = EpochTimes()
    batches = iter(train_loader)
    while split.steps < steps:
        started = time.perf_counter()
        images, labels = next(batches)
        fetched = time.perf_counter()
        optimizer.zero_grad()
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        split.steps += 1
        computed = time.perf_counter()
        split.data += fetched - started
        split.compute += computed - fetched
        if every and split.steps % every == 0:
            if where == "steps":
                test_pass(model, test_loader)
            else:
                with torch.no_grad():
                    (model(tensor[0]).argmax(1) == tensor[1]).float().mean().item()
            split.evaluation += time.perf_counter() - computed
            split.passes += 1
    started = time.perf_counter()
    accuracy = test_pass(model, test_loader)
    if where in ("epoch", "end"):
        split.evaluation += time.perf_counter() - started
        split.passes += 1
    return split, accuracy
