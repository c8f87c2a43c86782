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

from pydantic import Field, ValidationError, field_validator

from lessonflow.datasets import NAMES as DATASET_NAMES
from lessonflow.datasets import spec as dataset_spec
from lessonflow.kinds import kind_of
from lessonflow.schema import (
    DatasetParams, DeviceName, LessonBase, OrchestrationParams, ParamsError, Profile, Strict, describe, read_params, unknown,
)


class EnsembleParams(Strict):
    """Trained classifiers of one dataset whose saved class probabilities are combined."""

    dataset: str
    members: list[str] = Field(min_length=1)


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

    @field_validator("ensembles")
    @classmethod
    def _known_members(cls, ensembles: dict[str, EnsembleParams], info: Any) -> dict[str, EnsembleParams]:
        for name, group in ensembles.items():
            check_members(name, group, info.data.get("datasets", {}), info.data.get("lessons", {}))
        return ensembles


def check_members(name: str, group: EnsembleParams, declared: dict, lessons: dict[str, dict]) -> None:
    """An ensemble combines distinct lessons of its own dataset (their test sets must be the same)."""
    if group.dataset not in declared:
        raise ParamsError(f"{name}.dataset: {unknown('dataset', group.dataset, declared)}")
    same_data = [lesson for lesson, entry in lessons.items() if entry.get("dataset") == group.dataset]
    for member in group.members:
        if member not in same_data:
            raise ParamsError(f"{name}.members: {unknown(f'{group.dataset} lesson', member, same_data)}")
        if group.members.count(member) > 1:
            raise ParamsError(f"{name}.members: {member!r} is listed twice")
        if lessons[member].get("train_split") == "train+val":
            raise ParamsError(f"{name}.members: {member!r} trains on the validation split the ensemble fits its "
                              f"weights on (lessons.{member}.train_split: train+val); set it to 'train' "
                              "or leave the lesson out")


def check_source(name: str, entry: DatasetParams) -> list[str]:
    """A source the dataset has no fetcher for is caught here, not half-way through its download."""
    sources = dataset_spec(name).sources
    if entry.source != "auto" and entry.source not in sources:
        return [f"datasets.{name}.source: {entry.source!r} is not available for {name}; "
                f"allowed: auto, {', '.join(sources)}"]
    return []


def parse_lesson(lesson_id: str, entry: dict[str, Any], declared: dict) -> tuple[LessonBase | None, list[str]]:
    try:
        schema = kind_of(entry.get("kind")).Lesson
        lesson = schema.model_validate(entry)
    except ParamsError as err:
        return None, [f"lessons.{lesson_id}.{err}"]
    except ValidationError as err:
        return None, describe(err, schema, ("lessons", lesson_id))
    if lesson.dataset not in declared:
        return None, [f"lessons.{lesson_id}.dataset: {unknown('dataset', lesson.dataset, declared)}"
                      " (add it under 'datasets:' or pick a declared one)"]
    return lesson, []


def parse_params(raw: dict[str, Any], *, lessons: Iterable[str] | None = None,
                 datasets: Iterable[str] | None = None) -> Params:
    """Validate the global keys, then the named lessons and datasets in full (``None``: all of them).

    Every problem is reported at once. ``params.lessons`` holds the validated entries only.
    """
    try:
        top = Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError("params.yaml is invalid:\n  " + "\n  ".join(describe(err, Params))) from None
    lesson_ids = list(top.lessons if lessons is None else lessons)
    dataset_ids = list(top.datasets if datasets is None else datasets)
    for section, wanted in (("lessons", lesson_ids), ("datasets", dataset_ids)):
        known = getattr(top, section)
        for key in wanted:
            if key not in known:
                raise ParamsError(f"{section}: no entry {key!r}; known: {', '.join(sorted(known))}")
    parsed, problems = {}, []
    for name in dataset_ids:
        problems += check_source(name, top.datasets[name])
    for lesson_id in lesson_ids:
        parsed[lesson_id], errors = parse_lesson(lesson_id, top.lessons[lesson_id], top.datasets)
        problems += errors
    if problems:
        raise ParamsError("params.yaml is invalid:\n  " + "\n  ".join(problems))
    return top.model_copy(update={"lessons": parsed})


def load_params(path: str | os.PathLike = "params.yaml", *, lessons: Iterable[str] | None = None,
                datasets: Iterable[str] | None = None) -> Params:
    """Read and validate the file (see ``parse_params`` for what ``lessons`` and ``datasets`` select)."""
    return parse_params(read_params(path), lessons=lessons, datasets=datasets)
