"""The pieces of the params schema every layer shares, and the wording of its errors.

A leaf module: it imports nothing of the project but its errors, so kinds, datasets, the training loop and
``params.py`` all build on it without importing each other.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lessonflow.errors import ParamsError

Profile = Literal["embedded", "full"]
DeviceName = Literal["auto", "cpu", "cuda", "mps"]
SourceName = Literal["auto", "embedded", "official", "mirror", "csv"]
OptimizerName = Literal["sgd", "adam", "adamax", "rprop"]
ScheduleName = Literal["constant", "onecycle"]
TrainSplit = Literal["train", "train+val"]
# (mean, std) of the pixels in [0, 1], or one of each per channel (ImageNet's, for its weights)
Normalize = tuple[float, float] | tuple[tuple[float, float, float], tuple[float, float, float]]
SAMPLE_SOURCES = ("embedded", "synthetic")  # data sources of the embedded profile (CIFAR's says what its images are)
CONFIDENCE = 0.95  # the interval a lesson with several seeds gets unless it asks for another


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


class Augmentation(Strict):
    """Random transforms of the *training* batches (001 §7.7: Resize(40) + RandomHorizontalFlip + RandomCrop(32)).

    ``resize``: scale each image so its shorter side has this many pixels, then crop a
    random window of the original size back out; ``hflip``: mirror a random half of the
    images left to right. Evaluation never sees any of it.
    """

    resize: int | None = Field(None, gt=0)
    hflip: bool = False


class LessonBase(Strict):
    """Keys every lesson has; each kind extends it with its own (see ``lessonflow/kinds/``)."""

    kind: str
    dataset: str
    seed: int = 0
    reference_accuracy: float | None = Field(None, ge=0, le=1)
    reference: str = "none reported"
    # true for a lesson that goes past its tutorial (another recipe or model): the report labels it,
    # and ``reference`` is then the tutorial's result it is measured against
    beyond_tutorial: bool = False
    # a count (``seed``, ``seed`` + 1, …) or the seeds themselves; the first is saved where a lesson's one
    # model always was, each other beside it (lessonflow/seeds.py keeps their spread)
    seeds: int | list[int] = 1
    interval: float | None = Field(None, gt=0, lt=1)  # the t interval's confidence; default 0.95 with 2 seeds or more

    @model_validator(mode="after")
    def _seeds_valid(self) -> LessonBase:
        if isinstance(self.seeds, int) and self.seeds < 1:
            raise ParamsError(f"seeds: a count of seeds is 1 or more (got {self.seeds}); or list the seeds: [0, 1, 2]")
        if isinstance(self.seeds, list):
            if not self.seeds:
                raise ParamsError("seeds: the list names no seed; allowed: a count of 1 or more, or distinct seeds")
            twice = next((seed for seed in self.seeds if self.seeds.count(seed) > 1), None)
            if twice is not None:
                raise ParamsError(f"seeds: seed {twice} is listed twice; allowed: distinct seeds")
        if self.interval is not None and len(self.seed_list) < 2:
            raise ParamsError(f"interval: a {self.interval:.0%} interval needs 2 seeds or more, and seeds gives "
                              f"{self.seed_list}; add seeds or drop interval")
        return self

    @property
    def seed_list(self) -> list[int]:
        """The seeds it trains, the first one first."""
        return list(self.seeds) if isinstance(self.seeds, list) else list(range(self.seed, self.seed + self.seeds))

    @property
    def confidence(self) -> float | None:
        """The interval its metrics give: the one asked for, else the default when there are seeds enough."""
        return self.interval or (CONFIDENCE if len(self.seed_list) > 1 else None)

    def for_profile(self, profile: str) -> LessonBase:
        """The lesson as it runs on ``profile``: a kind whose data or network differ there replaces them."""
        return self

    def for_source(self, data_source: str) -> LessonBase:
        """The settings the lesson trains and is scored with on data from ``data_source``: a kind with
        settings for the sample data (``embedded:``) puts them in place here, once, before it runs."""
        return self


def on_sample_data(lesson: LessonBase, data_source: str, sources: tuple[str, ...]) -> LessonBase:
    """``lesson`` with its ``embedded:`` settings in place when ``data_source`` is one of the sample ``sources``:
    for a kind whose ``embedded`` block holds replacements of its own keys."""
    budget = getattr(lesson, "embedded", None)
    if data_source not in sources or budget is None:
        return lesson
    return lesson.model_copy(update=budget.model_dump(exclude_none=True))


def unknown(what: str, name: str, allowed: Any) -> str:
    return f"unknown {what} {name!r}; allowed: {', '.join(sorted(allowed))}"


def allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
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


def describe(err: ValidationError, schema: type[BaseModel], prefix: tuple = ()) -> list[str]:
    """One line per problem: the dotted key, what is wrong, and the keys or values allowed there."""
    lines = []
    for problem in err.errors():
        loc = tuple(problem["loc"])
        key = ".".join(str(p) for p in (*prefix, *loc)) or "<top level>"
        error = problem.get("ctx", {}).get("error")
        if problem["type"] == "extra_forbidden":
            allowed = ", ".join(allowed_keys(schema, loc))
            lines.append(f"{key}: unknown key; allowed keys here: {allowed}")
        elif isinstance(error, ParamsError):
            lines.append(f"{key}.{error}")
        else:
            got = problem.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"{key}: {problem['msg'].removeprefix('Value error, ')}{shown}")
    return lines


# libyaml's parser when PyYAML has it: the same mapping, read ten times faster (every stage reads this file)
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class OrchestrationParams(Strict):
    """How flow and scheduled runs guard a checkout left alone for weeks (docs/orchestration.md).

    A hung stage (a stalled download, a deadlocked data loader) would otherwise hold the checkout
    forever, so each stage has a time limit, generous by default. ``notify`` is where a failed or
    crashed run is reported: a webhook URL (Slack-compatible JSON) or the name of a Prefect
    notification block (``slack-webhook/team``); ``LESSONFLOW_NOTIFY`` overrides it, for a URL
    that must not be committed. ``seed_workers`` is how many of a lesson's seeds its train stage
    trains at once, each in its own process (``lessonflow/seed_workers.py``); 1 trains them in turn.
    """

    stage_timeout_minutes: float = Field(720, gt=0)
    notify: str | None = None
    seed_workers: int = Field(1, ge=1)


def read_params(path: str | os.PathLike = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found: run from the project root (where dvc.yaml is)")
    with path.open() as fh:
        raw = yaml.load(fh, Loader=SAFE_LOADER) or {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    return raw


def load_orchestration(path: str | os.PathLike = "params.yaml") -> OrchestrationParams:
    """Only the ``orchestration`` section: what a flow needs before it starts, without importing any lesson's kind."""
    try:
        return OrchestrationParams.model_validate(read_params(path).get("orchestration") or {})
    except ValidationError as err:
        raise ParamsError("params.yaml is invalid:\n  " + "\n  ".join(describe(err, OrchestrationParams, ("orchestration",)))) from None
