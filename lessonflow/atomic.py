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
    """Yield a temporary path for ``final``; rename it into place only if the block succeeds.

    The temporary file carries ``final``'s own name inside a private folder beside it,
    because writers look at the name: ``torch.save`` names its archive after the file
    (a random name would make every model file differ), NumPy and Matplotlib pick the
    format from the suffix. A folder left by a writer that was killed is removed here.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.*.partial"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield staging / final.name
        os.replace(staging / final.name, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
