"""Where every stage reads and writes. The one place that knows the project layout.

``dvc.yaml`` spells out the same paths for DVC; ``tests/test_layout.py`` keeps the two in step.
Library functions take paths as arguments; only stages call this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path

    @classmethod
    def here(cls) -> Layout:
        return cls(Path.cwd())

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    def raw(self, dataset: str) -> Path:
        return self.root / "data" / "raw" / dataset

    def prepared(self, dataset: str) -> Path:
        return self.root / "data" / "prepared" / f"{dataset}.pt"

    def model(self, lesson: str) -> Path:
        return self.root / "models" / lesson / "model.pt"

    def checkpoint(self, lesson: str) -> Path:
        return self.root / "models" / lesson / "checkpoint.pt"

    def train_log(self, lesson: str) -> Path:
        """DVCLive folder of the training curves and the train summary."""
        return self.root / "results" / lesson / "train"

    def eval_log(self, lesson: str) -> Path:
        """DVCLive folder of the test metrics and the confusion matrix."""
        return self.root / "results" / lesson / "eval"

    def predictions(self, lesson: str) -> Path:
        return self.root / "results" / lesson / "predictions.npz"
