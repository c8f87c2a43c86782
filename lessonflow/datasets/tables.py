"""Reading the small numeric text tables of the tabular datasets (Boston housing, Pima diabetes).

A malformed file (a truncated last row, a stray header, the wrong number of columns)
fails here with the file and the line, instead of turning into a silently shifted array.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def read_table(path: Path, columns: int, *, delimiter: str | None = None) -> np.ndarray:
    """All rows of a headerless numeric table as float64, each with exactly ``columns`` values.

    ``delimiter=None`` splits on any run of whitespace (``housing.data``); ``","`` reads CSV.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(delimiter)
        if len(fields) != columns:
            raise ValueError(f"{path}, line {number}: {len(fields)} columns, expected {columns}")
        try:
            rows.append([float(field) for field in fields])
        except ValueError:
            raise ValueError(f"{path}, line {number}: not all values are numbers: {line.strip()[:80]!r}") from None
    if not rows:
        raise ValueError(f"{path}: no data rows")
    return np.asarray(rows, dtype=np.float64)
