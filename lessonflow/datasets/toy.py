"""The tutorials' inline data points, as one table: the data of the Foundations lessons.

The seeds type these few points into their code; one constants table (written to the raw folder
as JSON by ``fetch``) makes them a dataset like any other, so DVC rebuilds the lessons when a point
changes. The only source is ``embedded``. Every point set is ``{"x": [...], "y": [...]}``;
``square`` has no targets (the autograd lesson only differentiates ½Σx² at its points).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from lessonflow.datasets import DatasetSpec, register

RAW_FILE = "toy.json"

POINT_SETS: dict[str, dict[str, list[float]]] = {
    # 002 §3-7, 003 A-F: y = 2x
    "linear": {"x": [1.0, 2.0, 3.0], "y": [2.0, 4.0, 6.0]},
    # 002 §3.3, the (w, b) loss surface: y = 3x + 2
    "affine": {"x": [1.0, 2.0, 3.0], "y": [5.0, 8.0, 11.0]},
    # 000 "Variables": y = x² at x = [2, 4]
    "square": {"x": [2.0, 4.0]},
    # 000 "线性回归": car price -> number of cars sold
    "car_prices": {"x": [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], "y": [7.5, 7.0, 6.5, 6.0, 5.5, 5.0, 4.5]},
    # 001 §3.1.1 (l.565-571): 19 noisy (x, y) pairs
    "book_pairs": {
        "x": [2.3, 4.4, 3.7, 6.1, 7.3, 2.1, 5.6, 7.7, 8.7, 4.1, 6.7, 6.1, 7.5, 2.1, 7.2, 5.6, 5.7, 7.7, 3.1],
        "y": [3.7, 4.76, 4.0, 7.1, 8.6, 3.5, 5.4, 7.6, 7.9, 5.3, 7.3, 7.5, 8.5, 3.2, 8.7, 6.4, 6.6, 7.9, 5.3],
    },
    # 002 §7, 003 G: hours studied -> passed
    "hours": {"x": [1.0, 2.0, 3.0], "y": [0.0, 0.0, 1.0]},
}


def fetch(source: str, raw_dir: Path, params: Any) -> None:
    (raw_dir / RAW_FILE).write_text(json.dumps(POINT_SETS, indent=2) + "\n")


def decode(source: str, raw_dir: Path, params: Any) -> dict[str, Any]:
    """Each point set as float32 column tensors of shape (N, 1), the shape ``nn.Linear(1, 1)`` takes."""
    path = raw_dir / RAW_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run the download stage first (dvc repro)")
    try:
        sets = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    prepared = {}
    for name, columns in sets.items():
        lengths = {len(values) for values in columns.values()}
        if len(lengths) != 1 or 0 in lengths:
            raise ValueError(f"{path}: point set {name!r} needs columns of equal, non-zero length")
        prepared[name] = {column: torch.tensor(values, dtype=torch.float32).view(-1, 1)
                          for column, values in columns.items()}
    return prepared


def point_set(data: dict[str, Any], name: str, key: str, targets: bool = True) -> dict[str, torch.Tensor]:
    """The columns of a named point set from a prepared ``toy`` file, or an error naming ``key`` and the choices."""
    found = data.get(name)
    if not isinstance(found, dict) or (targets and "y" not in found):
        available = sorted(k for k, v in data.items() if isinstance(v, dict) and (not targets or "y" in v))
        needed = " with targets (y)" if targets else ""
        raise ValueError(f"{key}: no point set {name!r}{needed} in dataset {data['dataset']!r}; "
                         f"available: {', '.join(available)}")
    return found


register(DatasetSpec("toy", ("embedded",), fetch, decode))
