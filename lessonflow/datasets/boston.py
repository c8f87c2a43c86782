"""Boston housing (UCI ``housing.data``): 13 features, the median house value MEDV as the target.

The one-feature lessons (seed 004 day 1) fit the price on ``RM``, the rooms per dwelling; the
mini-framework lesson uses all 13. The split is the seed's own (20 % test, ``random_state=666``),
with no validation split, since none of these lessons tunes on one. ``official`` and ``mirror``
are checked against one sha256; ``embedded`` is scikit-learn's bundled diabetes regression data
with BMI as the one feature, rescaled so that the seed's learning rate, chosen for RM, stays stable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lessonflow.datasets import DatasetSpec, mirror_root, register
from lessonflow.datasets.fetch import copy_verified, download, verify
from lessonflow.datasets.tables import read_table

OFFICIAL_URLS = ["https://archive.ics.uci.edu/ml/machine-learning-databases/housing/housing.data"]
MIRROR_FILE = "tabular/housing.data"
SHA256 = "e3e36f7b9e5435f9eb8320e106aebad00031fefa3064527da0c71dec59e49b76"
RAW_FILE = "housing.data"
FEATURES = ["CRIM", "ZN", "INDUS", "CHAS", "NOX", "RM", "AGE", "DIS", "RAD", "TAX", "PTRATIO", "B", "LSTAT"]
KEY_FEATURE = "RM"
EMBEDDED_FILE = "sklearn-diabetes.npz"
EMBEDDED_KEY = "BMI/10"
TEST_FRACTION, SPLIT_SEED = 0.2, 666


def fetch(source: str, raw_dir: Path, params: Any) -> None:
    if source == "embedded":
        from sklearn.datasets import load_diabetes

        bunch = load_diabetes(scaled=False)
        np.savez(raw_dir / EMBEDDED_FILE, data=bunch.data, target=bunch.target, features=np.array(bunch.feature_names))
    elif source == "mirror":
        copy_verified(mirror_root() / MIRROR_FILE, raw_dir / RAW_FILE, sha256=SHA256)
    else:
        download(params.urls or OFFICIAL_URLS, raw_dir / RAW_FILE, sha256=SHA256)


def read_housing(path: Path) -> tuple[np.ndarray, np.ndarray]:
    table = read_table(path, len(FEATURES) + 1)
    return table[:, :-1], table[:, -1]


def embedded_diabetes(raw_dir: Path) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    with np.load(raw_dir / EMBEDDED_FILE) as bundle:
        x, y, names = bundle["data"].copy(), bundle["target"], [str(n) for n in bundle["features"]]
    bmi = names.index("bmi")
    x[:, bmi] /= 10.0
    names[bmi] = EMBEDDED_KEY
    return x, y, names, EMBEDDED_KEY


def decode(source: str, raw_dir: Path, params: Any) -> dict[str, Any]:
    """Float32 features (N, F) and targets (N,), the feature names, and which one the one-feature lessons use."""
    from sklearn.model_selection import train_test_split

    if source == "embedded":
        x, y, features, key = embedded_diabetes(raw_dir)
    else:
        verify(raw_dir / RAW_FILE, SHA256)
        (x, y), features, key = read_housing(raw_dir / RAW_FILE), FEATURES, KEY_FEATURE
    train, test = train_test_split(np.arange(len(y)), test_size=TEST_FRACTION, random_state=SPLIT_SEED)
    x, y = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    return {"features": features, "key_feature": key,
            "x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}


register(DatasetSpec("boston", ("embedded", "official", "mirror"), fetch, decode))
