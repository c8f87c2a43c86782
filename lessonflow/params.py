"""The schema of ``params.yaml`` and the one function every stage calls to read it.

Everything is validated up front so that a typo fails *before* a stage deletes,
downloads or trains anything, with a message that names the key and the values
that would have been accepted.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Profile = Literal["embedded", "full"]
DeviceName = Literal["auto", "cpu", "cuda", "mps"]
SourceName = Literal["auto", "embedded", "official", "mirror", "csv"]
OptimizerName = Literal["sgd", "adam", "adamax", "rprop"]
ScheduleName = Literal["constant", "onecycle"]
TrainSplit = Literal["train", "train+val"]


class ParamsError(ValueError):
    """A params.yaml problem, phrased for the person who has to fix the file."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetParams(Strict):
    source: SourceName = "auto"
    val_fraction: float = Field(0.1, gt=0, lt=1)
    urls: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)


class ModelParams(Strict):
    model_config = ConfigDict(extra="allow", frozen=True)
    name: str

    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class OptimizerParams(Strict):
    name: OptimizerName = "sgd"
    lr: float = Field(gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)


class LessonBase(Strict):
    """Keys every lesson has; each kind extends it with its own (see ``lessonflow/kinds/``)."""

    kind: str
    dataset: str
    seed: int = 0
    reference_accuracy: float | None = Field(None, ge=0, le=1)
    reference: str = "none reported"


class Training(Strict):
    """A model trained by gradient descent in epochs of mini-batches: a lesson's, or a helper model's."""

    model: ModelParams
    optimizer: OptimizerParams
    schedule: ScheduleName = "constant"
    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=0)

    @model_validator(mode="after")
    def _model_exists(self) -> Training:
        from lessonflow.zoo import check_model_args

        try:
            check_model_args(self.model.name, self.model.kwargs())
        except ValueError as err:
            raise ParamsError(f"model.{err}") from None
        return self


class TrainedLesson(Training, LessonBase):
    """A lesson trained by gradient descent in epochs of mini-batches."""


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

    @field_validator("ensembles")
    @classmethod
    def _known_members(cls, ensembles: dict[str, EnsembleParams], info: Any) -> dict[str, EnsembleParams]:
        for name, group in ensembles.items():
            check_members(name, group, info.data.get("datasets", {}), info.data.get("lessons", {}))
        return ensembles

    @field_validator("datasets")
    @classmethod
    def _known_datasets(cls, datasets: dict[str, DatasetParams]) -> dict[str, DatasetParams]:
        from lessonflow.datasets import DATASETS

        for name in datasets:
            if name not in DATASETS:
                raise ValueError(_unknown("dataset", name, DATASETS))
            source = datasets[name].source
            if source != "auto" and source not in DATASETS[name].sources:  # caught here, not in the download
                raise ParamsError(f"{name}.source: {source!r} is not available for {name}; "
                                  f"allowed: auto, {', '.join(DATASETS[name].sources)}")
        return datasets


def _unknown(what: str, name: str, allowed: Any) -> str:
    return f"unknown {what} {name!r}; allowed: {', '.join(sorted(allowed))}"


def check_members(name: str, group: EnsembleParams, datasets: dict, lessons: dict[str, dict]) -> None:
    """An ensemble combines distinct lessons of its own dataset (their test sets must be the same)."""
    if group.dataset not in datasets:
        raise ParamsError(f"{name}.dataset: {_unknown('dataset', group.dataset, datasets)}")
    same_data = [lesson for lesson, entry in lessons.items() if entry.get("dataset") == group.dataset]
    for member in group.members:
        if member not in same_data:
            raise ParamsError(f"{name}.members: {_unknown(f'{group.dataset} lesson', member, same_data)}")
        if group.members.count(member) > 1:
            raise ParamsError(f"{name}.members: {member!r} is listed twice")
        if lessons[member].get("train_split") == "train+val":
            raise ParamsError(f"{name}.members: {member!r} trains on the validation split the ensemble fits its "
                              f"weights on (lessons.{member}.train_split: train+val); set it to 'train' "
                              "or leave the lesson out")


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """Walk the schema along an error location to list the keys valid at that level."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = field.annotation
            if get_origin(current) in (Union, UnionType):  # an optional block: `Model | None`
                current = next((arg for arg in get_args(current) if isinstance(arg, type)
                                and issubclass(arg, BaseModel)), current)
        else:  # a dict[str, Model]: the part is the user's own key
            args = get_args(current)
            current = args[-1] if args else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _describe(err: ValidationError, schema: type[BaseModel], prefix: tuple = ()) -> list[str]:
    lines = []
    for problem in err.errors():
        loc = tuple(problem["loc"])
        key = ".".join(str(p) for p in (*prefix, *loc)) or "<top level>"
        error = problem.get("ctx", {}).get("error")
        if problem["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_keys(schema, loc))
            lines.append(f"{key}: unknown key; allowed keys here: {allowed}")
        elif isinstance(error, ParamsError):
            lines.append(f"{key}.{error}")
        else:
            got = problem.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"{key}: {problem['msg'].removeprefix('Value error, ')}{shown}")
    return lines


def lesson_schema(kind: Any) -> type[LessonBase]:
    from lessonflow.lessons import KINDS, load_kind

    if kind not in KINDS:
        raise ParamsError(f"kind: {_unknown('lesson kind', str(kind), KINDS)}")
    return load_kind(kind).schema


def _parse_lesson(lesson_id: str, entry: dict[str, Any], datasets: dict) -> tuple[LessonBase | None, list[str]]:
    where = ("lessons", lesson_id)
    try:
        schema = lesson_schema(entry.get("kind"))
        lesson = schema.model_validate(entry)
    except ParamsError as err:
        return None, [f"lessons.{lesson_id}.{err}"]
    except ValidationError as err:
        return None, _describe(err, schema, where)
    if lesson.dataset not in datasets:
        return None, [f"lessons.{lesson_id}.dataset: {_unknown('dataset', lesson.dataset, datasets)}"
                      " (add it under 'datasets:' or pick a declared one)"]
    return lesson, []


def parse_params(raw: dict[str, Any]) -> Params:
    """Validate the global keys, then each lesson against its own kind's schema, reporting every problem."""
    try:
        top = Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError("params.yaml is invalid:\n  " + "\n  ".join(_describe(err, Params))) from None
    lessons, problems = {}, []
    for lesson_id, entry in top.lessons.items():
        lesson, errors = _parse_lesson(lesson_id, entry, top.datasets)
        lessons[lesson_id] = lesson
        problems += errors
    if problems:
        raise ParamsError("params.yaml is invalid:\n  " + "\n  ".join(problems))
    return top.model_copy(update={"lessons": lessons})


def load_params(path: str | os.PathLike = "params.yaml") -> Params:
    """Read and validate the whole file: every stage checks every key, so no stage starts on a bad file."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found: run from the project root (where dvc.yaml is)")
    with path.open() as fh:
        raw = yaml.safe_load(fh) or {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    return parse_params(raw)
