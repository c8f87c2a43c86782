"""Metrics and plots as files DVC understands, written with DVCLive, never half-written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dvclive import Live

from lessonflow.atomic import atomic_dir
from lessonflow.environment import environment
from lessonflow.paths import OUTPUTS, PLOTS


@contextmanager
def live_log(final_dir: Path) -> Iterator[Live]:
    """A DVCLive logger whose folder replaces ``final_dir`` only once everything was logged.

    DVCLive is kept away from dvc.yaml and from experiment bookkeeping: the pipeline
    declares these files itself, so ``dvc exp run`` and ``dvc repro`` behave the same.
    The ``plots/`` and ``outputs/`` folders always exist, since dvc.yaml declares them
    for every lesson whatever its kind logs; ``outputs_of(live)`` is where extra files go.
    """
    with atomic_dir(final_dir, whole=False) as staging:
        for sub in (PLOTS, OUTPUTS):
            (staging / sub).mkdir()
        live = Live(dir=str(staging), save_dvc_exp=False, dvcyaml=None, report=None)
        yield live
        live.end()


def outputs_of(live: Live) -> Path:
    return Path(live.dir) / OUTPUTS



def log_curves(live: Live, rows: list[dict[str, float]], keys: dict[str, str]) -> None:
    """One DVCLive step per epoch; ``keys`` maps a history column to its plot name.

    The step is set rather than advanced with ``next_step()``, which rewrites the summary
    on every call: a curve of thousands of epochs (the toy lessons) would take a minute.
    """
    for step, row in enumerate(rows):
        live.step = step
        for column, name in keys.items():
            live.log_metric(name, row[column])


RUN_FACTS = ("train_seconds", "device", "data_source", "seed")


def run_facts(seconds: float, device: str, data_source: str, seed: int) -> dict[str, Any]:
    """What every train log holds whatever its kind, under the same names: the report, ``lessonflow
    compare`` and the history read them from every lesson alike."""
    return {"train_seconds": round(seconds, 6), "device": device, "data_source": data_source, "seed": seed}


def trained_with(device: str, model_file: Path, model: Any = None) -> dict[str, Any]:
    """What the model card states of a training: the environment and the saved model's facts
    (``model``: the torch module when the lesson trains one)."""
    return {"environment": environment(device), "model": model_facts(model_file, model)}


def model_facts(path: Path, model: Any = None) -> dict[str, Any]:
    """The saved file's size; for a torch model from the zoo also its parameter count and the shapes it was built
    for, which ``lessonflow.load`` needs to build it again without the data."""
    facts: dict[str, Any] = {"file_bytes": path.stat().st_size}
    if model is not None:
        facts.update(parameters=sum(parameter.numel() for parameter in model.parameters()), **model.built_for)
    return facts


# All but the duration: a retraining to the same weights leaves the evaluation as it was
# (``lessonflow/dvcfile.py``), so a copied duration would be an earlier run's.
CARRIED_FACTS = tuple(key for key in RUN_FACTS if key != "train_seconds")


def carried_facts(trained: dict[str, Any]) -> dict[str, Any]:
    """The train log's run facts, repeated in the evaluation's metrics so that one file tells the whole run."""
    return {key: trained[key] for key in CARRIED_FACTS}


def read_summary(live_dir: Path) -> dict[str, Any]:
    path = live_dir / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run the stage that writes it first (dvc repro)")
    return json.loads(path.read_text())
