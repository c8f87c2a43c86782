"""The ``classifier`` lesson kind: image classifiers trained with cross-entropy (every MNIST lesson)."""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import Field, model_validator

from lessonflow.classification import cross_entropy_trainer, evaluate_with, fit, plain_logits
from lessonflow.kinds import LessonKind
from lessonflow.lessons import LessonRun
from lessonflow.schema import Augmentation, OptimizerParams, ParamsError, ScheduleName, Strict, TrainSplit
from lessonflow.training import TrainConfig, TrainedLesson

LOG = logging.getLogger(__name__)


class Overrides(Strict):
    """Training settings beside the tutorial's (``fast``, ``embedded``): whatever it names replaces the lesson's."""

    optimizer: OptimizerParams | None = None
    schedule: ScheduleName | None = None
    epochs: int | None = Field(None, gt=0)
    batch_size: int | None = Field(None, gt=0)


class ClassifierLesson(TrainedLesson):
    """An image classifier trained with cross-entropy on a prepared image dataset.

    ``recipe: tutorial`` reproduces the tutorial's hyper-parameters; ``recipe: fast`` trains
    with those of the ``fast:`` block instead (the same model and data, a tuned schedule).
    Both are meant for the real 54 000 training images: on the embedded sample digits (about
    1 300) the same epochs are some forty times fewer steps, too few for some lessons to learn
    anything, so an ``embedded:`` block replaces their settings on that data only.
    ``train_split: train+val`` trains on the validation images too, as the tutorials did (they
    held nothing out): the lesson then has no validation curve and no ensemble may use it.
    """

    normalize: tuple[float, float] | None = None
    augment: Augmentation | None = None  # training batches only; evaluation sees the clean images
    recipe: Literal["tutorial", "fast"] = "tutorial"
    fast: Overrides | None = None
    embedded: Overrides | None = None
    train_split: TrainSplit = "train"
    compile: bool = False  # torch.compile the model (worth it on a GPU; see lessonflow/accel.py)
    deterministic: bool = True  # false lets a GPU autotune cuDNN; CPU runs stay bit-reproducible

    @model_validator(mode="after")
    def _fast_block_given(self) -> ClassifierLesson:
        if self.recipe == "fast" and self.fast is None:
            raise ParamsError("recipe: 'fast' needs a 'fast:' block (optimizer, schedule, epochs, batch_size); "
                              "allowed recipes: tutorial, fast")
        return self

    def chosen(self, data_source: str | None = None) -> ClassifierLesson:
        """The lesson with the selected recipe's settings in place, then the embedded budget's on that data."""
        lesson = self if self.recipe == "tutorial" else self.overridden_by(self.fast)
        return lesson.overridden_by(self.embedded) if data_source == "embedded" else lesson

    def overridden_by(self, overrides: Overrides | None) -> ClassifierLesson:
        named = {key: getattr(overrides, key) for key in Overrides.model_fields} if overrides else {}
        return self.model_copy(update={key: value for key, value in named.items() if value is not None})


def train_config(lesson: Any, data_source: str | None = None) -> TrainConfig:
    lesson = lesson.chosen(data_source)
    return TrainConfig.of(lesson, normalize=lesson.normalize, augment=lesson.augment, compile=lesson.compile,
                          deterministic=lesson.deterministic)


def train(run: LessonRun) -> None:
    lesson = run.lesson

    def configure(data_source: str) -> TrainConfig:
        if data_source == "embedded" and lesson.embedded:  # said, since an edit of the replaced keys does nothing
            LOG.info("on the embedded sample data %s trains with lessons.%s.embedded: %s", run.lesson_id,
                     run.lesson_id, lesson.embedded.model_dump(exclude_none=True))
        return train_config(lesson, data_source)

    fit(run, cross_entropy_trainer(configure), lesson.train_split, recipe=lesson.recipe)


def evaluate(run: LessonRun) -> dict[str, Any]:
    return evaluate_with(run, plain_logits(run.lesson.chosen().normalize))


KIND = LessonKind(schema=ClassifierLesson, train=train, evaluate=evaluate)
