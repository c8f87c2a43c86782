"""Pima Indians Diabetes: 8 clinical measurements, diabetes within five years (0/1).

The course (seeds 002 §8, 003 H) trains on a copy scaled to [-1, 1]; here the scaling is fitted
on the training split only, and 20 % is held out as a test split the seed never had (stratified,
``random_state=0``). ``official`` and ``mirror`` are checked against one sha256; ``embedded`` is
scikit-learn's bundled breast-cancer data. The models take their input width from the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lessonflow.datasets import DatasetSpec, Splits, mirror_root, register
from lessonflow.datasets.fetch import copy_verified, download, verify
from lessonflow.datasets.tables import read_table

OFFICIAL_URLS = ["https://raw.githubusercontent.com/jbrownlee/Datasets/master/pima-indians-diabetes.data.csv"]
MIRROR_FILE = "tabular/pima-indians-diabetes.csv"
SHA256 = "6bfe5d0f379d17a0e0819b996407e3c09bf80febd4287f2ed212190dfff154af"
RAW_FILE = "pima-indians-diabetes.csv"
COLUMNS = 9
CLASSES = ["no diabetes", "diabetes"]
EMBEDDED_FILE = "sklearn-breast-cancer.npz"
TEST_FRACTION, SPLIT_SEED = 0.2, 0


def fetch(source: str, raw_dir: Path, params: Any) -> None:
    if source == "embedded":
        from sklearn.datasets import load_breast_cancer

        bunch = load_breast_cancer()
        np.savez(raw_dir / EMBEDDED_FILE, data=bunch.data, target=bunch.target, classes=np.array(bunch.target_names))
    elif source == "mirror":
        copy_verified(mirror_root() / MIRROR_FILE, raw_dir / RAW_FILE, sha256=SHA256)
    else:
        download(params.urls or OFFICIAL_URLS, raw_dir / RAW_FILE, sha256=SHA256)


def read_pima(path: Path) -> tuple[np.ndarray, np.ndarray]:
    table = read_table(path, COLUMNS, delimiter=",")
    outcome = table[:, -1]
    if not np.isin(outcome, (0, 1)).all():
        row = int(np.flatnonzero(~np.isin(outcome, (0, 1)))[0]) + 1
        raise ValueError(f"{path}, row {row}: the outcome (last column) must be 0 or 1, got {outcome[row - 1]}")
    return table[:, :-1], outcome.astype(np.int64)


def scale_to_unit_range(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Map each feature's training range onto [-1, 1], as the course's data file is; constant columns stay 0."""
    low, high = train.min(axis=0), train.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    return [2.0 * (part - low) / span - 1.0 for part in (train, *others)]


def decode(source: str, raw_dir: Path, params: Any) -> Splits:
    from sklearn.model_selection import train_test_split

    if source == "embedded":
        with np.load(raw_dir / EMBEDDED_FILE) as bundle:
            x, y, classes = bundle["data"], bundle["target"].astype(np.int64), [str(c) for c in bundle["classes"]]
    else:
        verify(raw_dir / RAW_FILE, SHA256)
        (x, y), classes = read_pima(raw_dir / RAW_FILE), CLASSES
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED,
                                                        stratify=y)
    x_train, x_test = scale_to_unit_range(x_train, x_test)
    return Splits(torch.from_numpy(x_train).float(), torch.from_numpy(y_train),
                  torch.from_numpy(x_test).float(), torch.from_numpy(y_test), classes)


register(DatasetSpec("pima", ("embedded", "official", "mirror"), fetch, decode))
