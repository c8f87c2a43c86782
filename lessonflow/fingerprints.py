"""Code fingerprints: one small file per group of stages that run the same modules, written by ``check``.

DVC rewrites the whole ``dvc.lock`` after every stage, so every dep entry is paid for by every stage
of a build. A stage depends on one fingerprint (its modules, each with its md5) instead of on each
module: ``check``, which depends on every module, rewrites them all, and only the files whose
modules changed change content, so an edit still rebuilds exactly the stages that run it. The
report's and each ``evaluate@`` stage's file also hold a digest of the params they read, which
spares the lock every lesson's params a second and a third time (``train@`` keeps its own).
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
EVALUATE = "evaluate"  # one file per lesson: its params beside its kind's modules


def groups(params: Any, root: Path = ROOT) -> dict[str, list[str]]:
    """Fingerprint name -> the modules its stages run (the ones they load by name included)."""
    kinds = sorted({lesson.kind for lesson in params.lessons.values()})
    found = {f"{verb}-{name}": closure([f"stages.{verb}", dataset_module(name)], root)
             for verb in ("download", "prepare") for name in params.datasets}
    found |= {f"train-{kind}": closure(["stages.train", kind_module(kind)], root) for kind in kinds}
    found |= {f"{EVALUATE}-{lid}": closure([f"stages.{EVALUATE}", kind_module(lesson.kind)], root)
              for lid, lesson in params.lessons.items()}
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


def digested_params(params: Any) -> dict[str, tuple[str, ...]]:
    """Fingerprint name -> the params.yaml keys (dotted) its stages read and DVC does not track as params."""
    lessons = {f"{EVALUATE}-{lid}": ("device", f"lessons.{lid}") for lid in params.lessons}
    return {"report": REPORT_PARAMS, **lessons}


def _value(raw: dict, key: str) -> Any:
    for part in key.split("."):
        raw = raw.get(part) if isinstance(raw, dict) else None
    return raw


def contents(layout: Layout, params: Any) -> dict[str, str]:
    """Each fingerprint file's text: ``md5  module`` lines, then the digest of the params it covers, if any."""
    raw = read_params(layout.params)
    digested = digested_params(params)
    files = {}
    for name, modules in groups(params, layout.root).items():
        lines = [f"{_md5((layout.root / module).read_bytes())}  {module}" for module in modules]
        if keys := digested.get(name):
            sections = json.dumps({key: _value(raw, key) for key in keys}, sort_keys=True).encode()
            lines.append(f"{_md5(sections)}  params.yaml: {', '.join(keys)}")
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
