"""What a lesson kind is given and what it gives back: the typed contract between a kind and its stages.

A kind computes; the stage runner (``stages/train.py``, ``stages/evaluate.py``) seeds, picks the
device, loads the prepared data and saved states, and writes every file. Keeping the files out of
the kinds lets a test call a kind on a tiny in-memory input, and keeps every lesson's files alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch
    from matplotlib.figure import Figure

    from lessonflow.schema import LessonBase

CHECKPOINT_SUFFIX = "checkpoint.pt"  # every checkpoint's file name ends so: the train stage deletes them when done
Prepared = dict[str, Any]  # a prepared dataset as ``datasets.load_prepared`` reads it: tensors and facts by name
BACKBONE = "backbone"  # for a lesson with a ``backbone:``, the key of that lesson's saved model in its Prepared


@dataclass(frozen=True)
class Checkpoint:
    """Where a training may keep its resumable state, and what it must have been made by to be resumed."""

    path: Path
    fingerprint: str
    label: str  # the lesson id, named in progress bars and errors

    def beside(self, part: str) -> Checkpoint:
        """The checkpoint of a second model the same lesson trains (the GAN's judge)."""
        return Checkpoint(self.path.with_name(f"{part}-{self.path.name}"), self.fingerprint, f"{self.label} {part}")


@dataclass
class Trained:
    """A training's result: the states to save, by file stem, and what the train log records."""

    states: dict[str, Any]  # "model" is models/<id>/model.pt; others are saved beside it
    seconds: float  # time spent training, a run fact of the train log
    device: str  # where it computed: a NumPy kind says "cpu" whatever device it was given
    summary: dict[str, Any] = field(default_factory=dict)  # the train log's numbers beside the run facts
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch (or recorded step)
    curves: dict[str, str] = field(default_factory=dict)  # history column -> plot name
    network: torch.nn.Module | None = None  # a zoo model, when the lesson trains one: its card's facts


@dataclass(frozen=True)
class Saved:
    """What the train stage left: its states by file stem, and its train log's metrics."""

    states: dict[str, Any]
    metrics: dict[str, Any]


@dataclass
class Evaluated:
    """An evaluation's result: its metrics, the pictures to log and the arrays to keep, by file name.

    ``spread_also`` names metrics besides the headline that a reader weighs against it (a transfer
    lesson's from-scratch baseline and its gain over it): with several seeds they get a spread too.
    """

    metrics: dict[str, Any]
    images: dict[str, Figure] = field(default_factory=dict)
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    spread_also: tuple[str, ...] = ()


class Kind(Protocol):
    """A module of ``lessonflow/kinds/``: its params schema and its two functions."""

    Lesson: type[LessonBase]

    def train(self, lesson: LessonBase, *, name: str, data: Prepared, device: torch.device,
              checkpoint: Checkpoint) -> Trained: ...

    def evaluate(self, lesson: LessonBase, *, name: str, data: Prepared, device: torch.device,
                 saved: Saved) -> Evaluated: ...
