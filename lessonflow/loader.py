"""``lessonflow.load``: a lesson's trained torch model, ready to predict, from the workspace or a git revision.

Everything comes through DVC at that revision: params.yaml and the train log from git, the weights from the
workspace, the local cache or the DVC remote. The architecture is built from the lesson's params and the
input shape its train log recorded, so no dataset is needed.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import torch
import yaml

from lessonflow.errors import ParamsError
from lessonflow.params import parse_params
from lessonflow.registry import TORCH_MODEL_KINDS
from lessonflow.zoo import build_model


class ModelNotFound(LookupError):
    """No trained model where it was asked for; the message says what to run or fetch."""


def build(lesson: Any, facts: dict[str, Any]) -> torch.nn.Module:
    """The untrained architecture of a lesson whose train log recorded ``facts`` (its ``model`` block)."""
    return build_model(lesson.model.name, lesson.model.kwargs(), in_shape=tuple(facts["input_shape"]),
                       num_classes=facts["outputs"])


def load(lesson_id: str, rev: str | None = None, repo: str | os.PathLike | None = None) -> torch.nn.Module:
    """The trained model of ``lesson_id`` at ``rev`` (None: the workspace) of the project at ``repo`` (default:
    the one around the current folder), in eval mode on the CPU."""
    from dvc.api import DVCFileSystem
    from dvc.exceptions import DvcException
    from scmrepo.exceptions import SCMError

    where = f"revision {rev!r}" if rev else "the workspace"
    fs = DVCFileSystem(str(repo) if repo else None, rev=rev)
    try:
        raw = yaml.safe_load(fs.read_text("params.yaml"))
    except (DvcException, SCMError) as err:  # DVC opens the revision on the first read
        raise ModelNotFound(f"revision {rev!r} not found in {repo or 'this repository'}: {err}") from None
    lesson = lesson_at(raw, lesson_id, where)
    facts = train_facts(fs, lesson_id, where)
    try:
        weights = fs.read_bytes(f"models/{lesson_id}/model.pt")
    except (FileNotFoundError, DvcException) as err:
        raise ModelNotFound(f"{lesson_id}: the model built at {where} is neither in this clone nor in its DVC "
                            f"remote ({type(err).__name__}): `dvc push` it from the clone that built it") from None
    model = build(lesson, facts)
    model.load_state_dict(torch.load(io.BytesIO(weights), weights_only=True))
    return model.eval()


def lesson_at(raw: dict[str, Any], lesson_id: str, where: str) -> Any:
    """The lesson's validated entry in ``raw``, params.yaml as it is at that revision."""
    params = parse_params(raw, lessons=[lesson_id] if lesson_id in raw.get("lessons", {}) else [], datasets=[])
    if lesson_id not in params.lessons:
        raise ParamsError(f"lessons: no entry {lesson_id!r} at {where}; known: {', '.join(sorted(params.lessons))}")
    lesson = params.lessons[lesson_id]
    if lesson.kind not in TORCH_MODEL_KINDS:
        torch_lessons = [key for key, entry in raw["lessons"].items() if entry.get("kind") in TORCH_MODEL_KINDS]
        raise ParamsError(f"lessons.{lesson_id}.kind: {lesson.kind!r} trains no torch model; lessonflow.load takes "
                          f"one of: {', '.join(torch_lessons)}")
    return lesson


def train_facts(fs: Any, lesson_id: str, where: str) -> dict[str, Any]:
    """The ``model`` block of the lesson's train log (git-tracked): the shapes the model was built for."""
    path = f"results/{lesson_id}/train/metrics.json"
    try:
        facts = json.loads(fs.read_text(path)).get("model", {})
    except FileNotFoundError:
        raise ModelNotFound(f"{lesson_id} has no trained model at {where} ({path} missing): run "
                            f"`dvc repro train@{lesson_id}`" + (" and commit dvc.lock and results/" if
                                                               where != "the workspace" else "")) from None
    if "input_shape" not in facts:
        raise ModelNotFound(f"{lesson_id} at {where} was trained before its train log recorded the model's shapes: "
                            f"run `dvc repro train@{lesson_id}`")
    return facts
