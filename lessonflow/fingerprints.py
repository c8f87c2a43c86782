"""Code fingerprints: one small file per group of stages that run the same modules, written by ``check``.

DVC rewrites the whole ``dvc.lock`` after every stage, so every dep entry is paid for by every stage
of a build. A stage depends on one fingerprint (its modules, each with its md5) instead of on each
module: ``check``, which depends on every module, rewrites them all, and only the files whose
modules changed change content, so an edit still rebuilds exactly the stages that run it. The
report's file also holds a digest of the params sections it reads, which spares the lock every
lesson's params a second time.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lessonflow.atomic import atomic_dir
from lessonflow.codedeps import ROOT, closure, dataset_module, kind_module
from lessonflow.paths import Layout
from lessonflow.schema import read_params

FOLDER = "fingerprints"
VERBS = ("check", "download", "prepare", "train", "evaluate", "ensemble", "report")
REPORT_PARAMS = ("profile", "lessons", "ensembles")


def groups(params: Any, root: Path = ROOT) -> dict[str, list[str]]:
    """Fingerprint name -> the modules its stages run (the ones they load by name included)."""
    kinds = sorted({lesson.kind for lesson in params.lessons.values()})
    found = {f"{verb}-{name}": closure([f"stages.{verb}", dataset_module(name)], root)
             for verb in ("download", "prepare") for name in params.datasets}
    found |= {f"{verb}-{kind}": closure([f"stages.{verb}", kind_module(kind)], root)
              for verb in ("train", "evaluate") for kind in kinds}
    found["ensemble"] = closure(["stages.ensemble"], root)
    found["report"] = closure(["stages.report", *map(kind_module, kinds)], root)
    return found


def check_modules(params: Any, root: Path = ROOT) -> list[str]:
    """What ``check`` reads: every module a stage can run, to fingerprint them and to see whether dvc.yaml is current."""
    return closure([*(f"stages.{verb}" for verb in VERBS), *map(dataset_module, params.datasets),
                    *{kind_module(lesson.kind) for lesson in params.lessons.values()}], root)


def path(name: str) -> str:
    return f"{FOLDER}/{name}.txt"


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def contents(layout: Layout, params: Any) -> dict[str, str]:
    """Each fingerprint file's text: ``md5  module`` lines; the report's also the digest of its params."""
    raw = read_params(layout.params)
    files = {}
    for name, modules in groups(params, layout.root).items():
        lines = [f"{_md5((layout.root / module).read_bytes())}  {module}" for module in modules]
        if name == "report":
            sections = json.dumps({key: raw.get(key) for key in REPORT_PARAMS}, sort_keys=True).encode()
            lines.append(f"{_md5(sections)}  params.yaml: {', '.join(REPORT_PARAMS)}")
        files[name] = "\n".join(lines) + "\n"
    return files


def outdated(layout: Layout, params: Any) -> list[str]:
    """The fingerprint files the next ``check`` will rewrite (missing or with other content), sorted."""
    return sorted(name for name, text in contents(layout, params).items()
                  if not (file := layout.root / path(name)).is_file() or file.read_text() != text)


def write(layout: Layout, params: Any) -> Path:
    """Write every fingerprint file, and nothing else, into the folder in one step."""
    folder = layout.root / FOLDER
    with atomic_dir(folder) as staging:
        for name, text in contents(layout, params).items():
            (staging / f"{name}.txt").write_text(text)
    return folder
