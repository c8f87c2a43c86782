"""Stop a stage at its first line when a Python without the project's packages runs it.

``dvc.yaml`` runs ``python -m stages.<verb>``, and ``python`` is whatever comes first on the
caller's PATH: from a shell that never activated ``.venv`` that is the machine's own
interpreter, and the stage would die deep inside an ``import torch``. The check compares the
project's requirements (``pyproject.toml``) with what the running interpreter has installed,
using the standard library only, so it can run before anything else is imported.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
HINT = "run `source .venv/bin/activate` in this shell first (`make install` creates .venv), or build with `make run`"
SHOWN = 3  # requirements named in the message; a bare interpreter lacks all of them
REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:==\s*([^\s,;]+))?")


def unmet_requirements(pyproject: Path = PYPROJECT) -> list[str]:
    """The project's requirements this interpreter lacks, or has at another pinned (``==``) version."""
    import tomllib

    requirements = [REQUIREMENT.match(requirement).groups()
                    for requirement in tomllib.loads(pyproject.read_text())["project"]["dependencies"]]
    listed = listed_versions()
    if all(_meets(listed.get(_normalise(name)), pinned) for name, pinned in requirements):
        return []
    from importlib import metadata  # the exact answer, and the message, when the quick look finds a problem

    unmet = []
    for name, pinned in requirements:
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            unmet.append(name)
            continue
        if not _meets(installed, pinned):
            unmet.append(f"{name}=={pinned} (has {installed})")
    return unmet


def listed_versions() -> dict[str, str | None]:
    """Normalised name -> version of the distributions on ``sys.path``, read from their folders' names.

    Every stage asks before it starts, and ``importlib.metadata`` is far slower at it (the warm
    start-up's share in BENCHMARKS.md). The first folder found wins, as for ``importlib.metadata``; a folder whose name
    carries no version (an ``.egg-info`` of an editable install) maps to None, so the exact check decides.
    """
    found: dict[str, str | None] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for folder in names:
            stem, dot, suffix = folder.rpartition(".")
            if dot and suffix in ("dist-info", "egg-info"):
                name, _, version = stem.partition("-")
                found.setdefault(_normalise(name), version.split("-")[0] or None)
    return found


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _meets(installed: str | None, pinned: str | None) -> bool:
    return installed is not None and (not pinned or installed.split("+")[0] == pinned)


def require_project_interpreter() -> None:
    """Exit with status 2 and one line naming this interpreter and the fix, unless it can run the project."""
    if not PYPROJECT.is_file():  # installed without its source tree: nothing to compare against
        return
    if sys.version_info < (3, 11):
        unmet = ["Python >= 3.11"]
    else:
        unmet = unmet_requirements()
    if unmet:
        version = ".".join(map(str, sys.version_info[:3]))
        named = ", ".join(unmet[:SHOWN]) + (f" and {len(unmet) - SHOWN} more" if len(unmet) > SHOWN else "")
        print(f"lessonflow: {sys.executable} (Python {version}) cannot run this stage, it lacks {named}: {HINT}",
              file=sys.stderr)
        sys.exit(2)
