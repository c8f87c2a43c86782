"""Datasets: where each one comes from, how it is checked, and the tensors it becomes.

Every dataset goes through the same two DVC stages: ``download_dataset`` resolves the source
(``embedded``, ``official``, ``mirror`` …), fetches the raw files into a fresh folder and records
the source in ``SOURCE.json``; ``prepare_dataset`` verifies and decodes them once into uint8
tensors with a fixed train / validation / test split, so training never decodes per sample.
A dataset module only supplies the source-specific parts (a :class:`DatasetSpec`).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lessonflow.atomic import atomic_dir, atomic_path

MIRROR_ENV = "LESSONFLOW_DATA_MIRROR"
MANIFEST = "SOURCE.json"


@dataclass(frozen=True)
class Splits:
    """Decoded arrays as a dataset module returns them: a train and a test part."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    source: str | None = None  # what the data is, where the source's name would mislead (e.g. "synthetic")


@dataclass(frozen=True)
class DatasetSpec:
    """``decode`` returns :class:`Splits` (train/test examples: ``prepare_dataset`` holds out the
    validation split) or a ``dict`` that is already final, saved as it is. The dict form is for data
    that is not a train/test sample set, e.g. the tutorials' named inline point sets (``toy``):
    a random validation split of three points would only destroy the lesson.
    """

    name: str
    sources: tuple[str, ...]
    fetch: Callable[[str, Path, Any], None]
    decode: Callable[[str, Path, Any], Splits | dict[str, Any]]
    # Sources whose content changes by itself (e.g. official stock prices): a scheduled flow run
    # re-downloads them every time (flows.pipeline, refresh_sources).
    live_sources: tuple[str, ...] = ()


# Every dataset, by its params.yaml name; its module is the name with "_" for "-". A stage imports
# only the module of the dataset it works on (``spec``), so its code deps in dvc.yaml stay exact.
NAMES = ("mnist", "cifar", "sign-digits", "boston", "pima", "toy", "stock", "images", "fra-eng", "catdog")
_SPECS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    _SPECS[spec.name] = spec
    return spec


def spec(name: str) -> DatasetSpec:
    """The dataset's spec, importing (and so registering) its module on first use."""
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(sorted(NAMES))}")
    if name not in _SPECS:
        importlib.import_module(f"{__name__}.{name.replace('-', '_')}")
    return _SPECS[name]


def resolve_source(requested: str, profile: str) -> str:
    """``auto`` follows the profile: embedded data by default, the real data under ``full``."""
    if requested != "auto":
        return requested
    if profile == "embedded":
        return "embedded"
    return "mirror" if os.environ.get(MIRROR_ENV) else "official"


def mirror_root() -> Path:
    root = os.environ.get(MIRROR_ENV)
    if not root:
        raise RuntimeError(f"source 'mirror' needs {MIRROR_ENV} set to the mirror folder (e.g. ../shared/data)")
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise RuntimeError(f"{MIRROR_ENV}={root} is not a folder")
    return path


def download_dataset(name: str, dataset_params: Any, profile: str, raw_dir: Path) -> str:
    """Fill ``raw_dir`` from the resolved source; the old folder survives until the new one is complete."""
    dataset = spec(name)
    source = resolve_source(dataset_params.source, profile)
    if source not in dataset.sources:
        raise ValueError(f"datasets.{name}.source: {source!r} is not available for {name}; "
                         f"allowed: auto, {', '.join(dataset.sources)}")
    with atomic_dir(raw_dir) as staging:
        dataset.fetch(source, staging, dataset_params)
        (staging / MANIFEST).write_text(json.dumps({"dataset": name, "source": source}, indent=2) + "\n")
    return source


def read_source(raw_dir: Path) -> str:
    manifest = raw_dir / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} missing: run the download stage first (dvc repro)")
    return json.loads(manifest.read_text())["source"]


def split_validation(x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int = 0):
    """Hold a fixed, seeded share of the training split out for ensembles and early checks."""
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(len(y) * fraction))
    val, train = order[:n_val].sort().values, order[n_val:].sort().values
    return x[train], y[train], x[val], y[val]


def prepare_dataset(name: str, dataset_params: Any, raw_dir: Path, out_path: Path) -> dict[str, Any]:
    source = read_source(raw_dir)
    splits = spec(name).decode(source, raw_dir, dataset_params)
    if isinstance(splits, Splits):
        x_train, y_train, x_val, y_val = split_validation(splits.x_train, splits.y_train, dataset_params.val_fraction)
        prepared = {
            "dataset": name, "source": splits.source or source, "classes": splits.classes,
            "x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val,
            "x_test": splits.x_test, "y_test": splits.y_test,
        }
    else:  # already final: see DatasetSpec
        prepared = {"dataset": name, "source": source, **splits}
    with atomic_path(out_path) as tmp:
        torch.save(prepared, tmp)
    return prepared


def load_prepared(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run the prepare stage first (dvc repro)")
    return torch.load(path, weights_only=True)

