"""One lesson's run: what ``train@<lesson>`` and ``evaluate@<lesson>`` start with, whatever its kind.

A lesson is a params entry; its ``kind`` picks the module in ``lessonflow/kinds/`` whose pair of
functions the stage calls.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lessonflow import kinds
from lessonflow.datasets import load_prepared
from lessonflow.paths import Layout
from lessonflow.runtime import make_deterministic, pick_device

PACKAGE_DIR = Path(__file__).parent


@dataclass(frozen=True)
class LessonRun:
    """One lesson's view of the run: its id, its params, the global params and the layout."""

    lesson_id: str
    params: Any  # lessonflow.params.Params
    layout: Layout

    @property
    def lesson(self) -> Any:
        return self.params.lessons[self.lesson_id]

    def start_training(self) -> tuple[dict[str, Any], torch.device, str]:
        """(prepared data, device, checkpoint fingerprint), with the RNG seeded: how every train stage starts."""
        device = pick_device(self.params.device)
        make_deterministic(self.lesson.seed)
        prepared_path = self.layout.prepared(self.lesson.dataset)
        return load_prepared(prepared_path), device, self.fingerprint(prepared_path)

    def load_trained(self, build: Callable[[Any, dict[str, Any]], torch.nn.Module]):
        """(model on the run's device, prepared data, device): how every evaluate stage starts."""
        device = pick_device(self.params.device)
        data = load_prepared(self.layout.prepared(self.lesson.dataset))
        model = build(self.lesson, data)
        model.load_state_dict(torch.load(self.layout.model(self.lesson_id), weights_only=True))
        return model.to(device), data, device

    def fingerprint(self, *inputs: Path) -> str:
        """Identifies the params, input files, code and torch version a checkpoint was made with."""
        digest = hashlib.sha256(json.dumps(self.lesson.model_dump(), sort_keys=True).encode())
        digest.update(torch.__version__.encode())
        for path in [*inputs, *sorted(PACKAGE_DIR.rglob("*.py"))]:
            digest.update(path.read_bytes())
        return digest.hexdigest()


def train_lesson(run: LessonRun) -> None:
    kinds.load(run.lesson.kind).train(run)


def evaluate_lesson(run: LessonRun) -> dict[str, Any]:
    return kinds.load(run.lesson.kind).evaluate(run)
