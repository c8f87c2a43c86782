"""Write-then-rename helpers: a stage killed half-way never leaves a half-written output behind.

DVC marks this project's outputs ``persist`` so it does not delete them before a stage
runs; these helpers are what keeps the previous results intact until the new ones are whole.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(final: Path):
    """Yield a temporary path beside ``final``; rename it into place only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(final: Path, *, whole: bool = True):
    """Yield an empty staging folder whose content lands in ``final`` only if the block succeeds.

    ``whole=True`` replaces the folder; ``whole=False`` replaces just the entries the block
    wrote, so files others keep there (DVC's ``.gitignore``) survive.
    """
    staging = final.with_name(f".{final.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        if whole:
            shutil.rmtree(final, ignore_errors=True)
            os.replace(staging, final)
            return
        final.mkdir(parents=True, exist_ok=True)
        for entry in staging.iterdir():
            target = final / entry.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
