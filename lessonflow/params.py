"""Reading ``params.yaml``: the top-level schema and the one function every stage calls.

A stage checks the whole file's shape and, in full, the entries it works on, before it
deletes, downloads or trains anything, with a message that names the key and the values that
would have been accepted. The ``check`` stage, first in the pipeline, checks every entry in
full, so a typo anywhere stops ``dvc repro`` before any work. A stage imports only its own
lesson's kind and dataset: its code deps in dvc.yaml are exactly the modules it runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from lessonflow.datasets import NAMES as DATASET_NAMES
from lessonflow.datasets import spec as dataset_spec
from lessonflow.kinds import kind_of
from lessonflow.schema import (
    DatasetParams, DeviceName, LessonBase, OrchestrationParams, ParamsError, Profile, Strict, describe, read_params, unknown,
)


class EnsembleParams(Strict):
    """Trained classifiers of one dataset whose saved class probabilities are combined.

    ``blend``: fixed weights of the members' logits, one per member in their order (001 §5.4's
    0.6 / 0.4), scored as a fourth method beside the three the stage always runs.
    """

    dataset: str
    members: list[str] = Field(min_length=1)
    blend: list[float] | None = None

    @model_validator(mode="after")
    def _one_weight_per_member(self) -> EnsembleParams:
        if self.blend is not None and (len(self.blend) != len(self.members) or min(self.blend) < 0):
            raise ParamsError(f"blend: {len(self.members)} weights of at least 0 expected, one per member "
                             f"({', '.join(self.members)}); got {self.blend}")
        return self


class Params(Strict):
    profile: Profile = "embedded"
    device: DeviceName = "auto"
    datasets: dict[str, DatasetParams]
    lessons: dict[str, dict[str, Any]]
    ensembles: dict[str, EnsembleParams] = Field(default_factory=dict)
    orchestration: OrchestrationParams = Field(default_factory=OrchestrationParams)

    @field_validator("datasets")
    @classmethod
    def _known_datasets(cls, entries: dict[str, DatasetParams]) -> dict[str, DatasetParams]:
        for name in entries:
            if name not in DATASET_NAMES:
                raise ValueError(unknown("dataset", name, DATASET_NAMES))
        return entries


def check_members(name: str, group: EnsembleParams, declared: dict, lessons: dict[str, dict]) -> list[str]:
    """An ensemble combines distinct lessons of its own dataset (their test sets must be the same)."""
    key = f"ensembles.{name}"
    if group.dataset not in declared:
        return [f"{key}.dataset: {unknown('dataset', group.dataset, declared)}"]
    same_data = [lesson for lesson, entry in lessons.items() if entry.get("dataset") == group.dataset]
    for member in group.members:
        if member not in same_data:
            return [f"{key}.members: {unknown(f'{group.dataset} lesson', member, same_data)}"]
        if group.members.count(member) > 1:
            return [f"{key}.members: {member!r} is listed twice"]
        if lessons[member].get("train_split") == "train+val":
            return [f"{key}.members: {member!r} trains on the validation split the ensemble fits its "
                    f"weights on (lessons.{member}.train_split: train+val); set it to 'train' or leave the lesson out"]
    return []


def check_backbone(lesson_id: str, lesson: LessonBase | None, lessons: dict[str, dict]) -> list[str]:
    """A transfer lesson's ``backbone:`` names another lesson, whose saved model it builds on."""
    upstream = getattr(lesson, "backbone", None)
    if upstream is None or (upstream in lessons and upstream != lesson_id):
        return []
    others = [key for key in lessons if key != lesson_id]
    return [f"lessons.{lesson_id}.backbone: {unknown('lesson', upstream, others)}"]


def check_source(name: str, entry: DatasetParams) -> list[str]:
    """A source the dataset has no fetcher for is caught here, not half-way through its download."""
    if name not in DATASET_NAMES:
        return []  # reported as an unknown dataset already
    sources = dataset_spec(name).sources
    if entry.source != "auto" and entry.source not in sources:
        return [f"datasets.{name}.source: {entry.source!r} is not available for {name}; "
                f"allowed: auto, {', '.join(sources)}"]
    return []


def parse_lesson(lesson_id: str, entry: dict[str, Any], declared: dict | None,
                 profile: str = "embedded") -> tuple[LessonBase | None, list[str]]:
    """``declared``: the dataset names, or ``None`` when the ``datasets`` section itself is unreadable.
    The lesson is returned as it runs on ``profile`` (its dataset checked there)."""
    try:
        schema = kind_of(entry.get("kind")).Lesson
        lesson = schema.model_validate(entry).for_profile(profile)
    except ParamsError as err:
        return None, [f"lessons.{lesson_id}.{err}"]
    except ValidationError as err:
        return None, describe(err, schema, ("lessons", lesson_id))
    if declared is not None and lesson.dataset not in declared:
        return None, [f"lessons.{lesson_id}.dataset: {unknown('dataset', lesson.dataset, declared)}"
                      " (add it under 'datasets:' or pick a declared one)"]
    return lesson, []


def valid_entries(raw: dict[str, Any], section: str, schema: type[Strict]) -> dict[str, Any]:
    """The entries of ``raw[section]`` that pass ``schema`` on their own; the others are reported by the top-level check."""
    valid = {}
    for name, entry in mapping(raw, section).items():
        try:
            valid[name] = schema.model_validate(entry)
        except (ValidationError, ParamsError):
            pass
    return valid


def mapping(raw: dict[str, Any], section: str) -> dict[str, Any]:
    value = raw.get(section)
    return value if isinstance(value, dict) else {}


def parse_params(raw: dict[str, Any], *, lessons: Iterable[str] | None = None,
                 datasets: Iterable[str] | None = None) -> Params:
    """Validate the global keys, then the named lessons and datasets in full (``None``: all of them).

    Every section is checked even when another is invalid, and every problem is reported once:
    cross-references (a lesson's or an ensemble's dataset, an ensemble's members) are checked
    against the names declared, whether or not those entries are valid themselves, so one bad value
    is never repeated as a second error. ``params.lessons`` holds the validated entries only.
    """
    problems: list[str] = []
    try:
        top = Params.model_validate(raw)
    except ValidationError as err:
        top, problems = None, describe(err, Params)
    declared, entries = mapping(raw, "datasets"), mapping(raw, "lessons")
    names = declared if isinstance(raw.get("datasets"), dict) else None  # None: no names to check against
    lesson_ids = list(entries if lessons is None else lessons)
    dataset_ids = list(declared if datasets is None else datasets)
    for section, wanted, known in (("lessons", lesson_ids, entries), ("datasets", dataset_ids, declared)):
        for key in wanted:
            if key not in known:
                raise ParamsError(f"{section}: no entry {key!r}; known: {', '.join(sorted(known))}")
    valid_datasets = valid_entries(raw, "datasets", DatasetParams)
    for name in dataset_ids:
        problems += check_source(name, valid_datasets[name]) if name in valid_datasets else []
    parsed = {}
    for lesson_id in (key for key in lesson_ids if isinstance(entries[key], dict)):  # others: reported above
        parsed[lesson_id], errors = parse_lesson(lesson_id, entries[lesson_id], names, raw.get("profile", "embedded"))
        problems += errors
    lesson_entries = {key: entry for key, entry in entries.items() if isinstance(entry, dict)}
    for lesson_id, lesson in parsed.items():
        problems += check_backbone(lesson_id, lesson, lesson_entries)
    for name, group in valid_entries(raw, "ensembles", EnsembleParams).items() if names is not None else ():
        problems += check_members(name, group, names, lesson_entries)
    if problems or top is None:
        raise ParamsError("params.yaml is invalid:\n  " + "\n  ".join(problems))
    return top.model_copy(update={"lessons": parsed})


def load_params(path: str | os.PathLike = "params.yaml", *, lessons: Iterable[str] | None = None,
                datasets: Iterable[str] | None = None) -> Params:
    """Read and validate the file (see ``parse_params`` for what ``lessons`` and ``datasets`` select)."""
    return parse_params(read_params(path), lessons=lessons, datasets=datasets)
