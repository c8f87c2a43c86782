"""The ``classifier`` lesson kind: image classifiers trained with cross-entropy (every MNIST lesson)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from lessonflow.classification import evaluate_with, fit
from lessonflow.lessons import LessonKind, LessonRun
from lessonflow.params import OptimizerParams, ParamsError, ScheduleName, Strict, TrainedLesson, TrainSplit
from lessonflow.training import Augmentation, TrainConfig


class FastRecipe(Strict):
    """A tuned recipe beside the tutorial's own settings: whatever it names replaces the lesson's."""

    optimizer: OptimizerParams | None = None
    schedule: ScheduleName | None = None
    epochs: int | None = Field(None, gt=0)
    batch_size: int | None = Field(None, gt=0)


class ClassifierLesson(TrainedLesson):
    """An image classifier trained with cross-entropy on a prepared image dataset.

    ``recipe: tutorial`` reproduces the tutorial's hyper-parameters; ``recipe: fast`` trains
    with those of the ``fast:`` block instead (the same model and data, a tuned schedule).
    ``train_split: train+val`` trains on the validation images too, as the tutorials did (they
    held nothing out): the lesson then has no validation curve and no ensemble may use it.
    """

    normalize: tuple[float, float] | None = None
    augment: Augmentation | None = None  # training batches only; evaluation sees the clean images
    recipe: Literal["tutorial", "fast"] = "tutorial"
    fast: FastRecipe | None = None
    train_split: TrainSplit = "train"
    compile: bool = False  # torch.compile the model (worth it on a GPU; see lessonflow/accel.py)
    deterministic: bool = True  # false lets a GPU autotune cuDNN; CPU runs stay bit-reproducible

    @model_validator(mode="after")
    def _fast_block_given(self) -> ClassifierLesson:
        if self.recipe == "fast" and self.fast is None:
            raise ParamsError("recipe: 'fast' needs a 'fast:' block (optimizer, schedule, epochs, batch_size); "
                              "allowed recipes: tutorial, fast")
        return self

    def chosen(self) -> ClassifierLesson:
        """The lesson with the selected recipe's settings in place."""
        if self.recipe == "tutorial":
            return self
        chosen = {key: getattr(self.fast, key) for key in FastRecipe.model_fields}
        return self.model_copy(update={key: value for key, value in chosen.items() if value is not None})


def train_config(lesson: Any) -> TrainConfig:
    lesson = lesson.chosen()
    return TrainConfig.of(lesson, normalize=lesson.normalize, augment=lesson.augment, compile=lesson.compile,
                          deterministic=lesson.deterministic)


def train(run: LessonRun) -> None:
    fit(run, train_config(run.lesson), run.lesson.train_split, recipe=run.lesson.recipe)


def evaluate(run: LessonRun) -> dict[str, Any]:
    return evaluate_with(run, run.lesson.chosen().normalize)


KIND = LessonKind(schema=ClassifierLesson, train=train, evaluate=evaluate)
