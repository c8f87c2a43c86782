"""Where every stage reads and writes: the one place that knows the project layout.

``lessonflow/dvcfile.py`` writes the same paths into ``dvc.yaml``. Library functions that compute
take paths as arguments; the stages, the report and the command line find their files here.
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

    def seed_folder(self, lesson: str, seed: int, first: int) -> Path:
        """Where one seed's states go: the first seed's where a lesson's one model always was, each other's beside it."""
        folder = self.model(lesson).parent
        return folder if seed == first else folder / f"{SEED_FOLDER}{seed}"

    def train_log(self, lesson: str) -> Path:
        """DVCLive folder: ``metrics.json`` (train summary) and ``plots/`` (per-epoch curves)."""
        return self.root / "results" / lesson / "train"

    def eval_log(self, lesson: str) -> Path:
        """DVCLive folder: ``metrics.json`` (test metrics), ``plots/`` (images) and ``outputs/``."""
        return self.root / "results" / lesson / "eval"

    def predictions(self, lesson: str) -> Path:
        """Validation and test class probabilities of a classifier, for the ensembles."""
        return self.eval_log(lesson) / OUTPUTS / "predictions.npz"

    def ensemble_log(self, name: str) -> Path:
        """DVCLive folder of ``ensemble@<name>``: ``metrics.json``, ``plots/`` (bar chart) and ``outputs/`` (table)."""
        return self.root / "results" / f"ensemble-{name}"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def reports(self) -> Path:
        """``report.html`` (self-contained) and ``report.md`` with its ``images/``."""
        return self.root / "reports"


OUTPUTS = "outputs"
PLOTS = "plots"
SEED_FOLDER = "seed-"  # models/<id>/seed-<n>/: a seed's states beside the first seed's
