"""The ``fast_cifar`` lesson kind: CIFAR-10 with airbench94's recipe (``lessonflow/fastcifar.py``).

Beyond the tutorial: ``cifar-resnet`` reproduces the tutorial's ResNet, which needs 80 GPU epochs
for its 87.79 %; this kind trains a small whitened net in a few epochs, which is what makes that
line reachable on a CPU. It shares the classifiers' loop, checkpoints, evaluation, predictions
(so ensembles can use it) and pictures; its own parts are the recipe and the test-time flips.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from lessonflow.classification import evaluate_with, fit
from lessonflow.fastcifar import Recipe, predict, train_fast
from lessonflow.kinds import LessonKind
from lessonflow.lessons import LessonRun
from lessonflow.schema import LessonBase, ModelParams, ParamsError, Strict
from lessonflow.zoo import check_model_args

SAMPLE_SOURCES = ("embedded", "synthetic")


class SampleBudget(Strict):
    """Settings that replace the recipe's on the sample images, where a 1 024-image batch is a whole epoch."""

    epochs: int | None = Field(None, gt=0)
    batch_size: int | None = Field(None, gt=0)


class FastCifarLesson(Recipe, LessonBase):
    """An ``airbench`` net trained with the recipe's keys (see ``Recipe``); ``embedded`` applies on sample data."""

    model: ModelParams
    embedded: SampleBudget | None = None

    @model_validator(mode="after")
    def _airbench_model(self) -> FastCifarLesson:
        if self.model.name != "airbench":
            raise ParamsError(f"model.name: the fast recipe trains the 'airbench' net (got {self.model.name!r}); "
                              "allowed: airbench")
        try:
            check_model_args(self.model.name, self.model.kwargs())
        except ValueError as err:
            raise ParamsError(f"model.{err}") from None
        return self

    def chosen(self, data_source: str) -> FastCifarLesson:
        """The recipe as it trains on this data: the ``embedded`` budget's settings on the sample images."""
        if data_source not in SAMPLE_SOURCES or self.embedded is None:
            return self
        return self.model_copy(update=self.embedded.model_dump(exclude_none=True))


def train(run: LessonRun) -> None:
    lesson = run.lesson

    def trainer(model: torch.nn.Module, data: dict[str, Any], *, device: torch.device, **where: Any):
        recipe = lesson.chosen(data["source"])

        def validate() -> dict[str, float]:  # the clean validation images, no test-time flips: cheap
            logits = predict(model, data["x_val"], 0, recipe.channels_last, device)
            return {"val_loss": F.cross_entropy(logits, data["y_val"]).item(),
                    "val_accuracy": (logits.argmax(1) == data["y_val"]).float().mean().item()}

        return train_fast(model, data["x_train"], data["y_train"], recipe, device=device, after_epoch=validate,
                          **where)

    fit(run, trainer, recipe="airbench94")


def evaluate(run: LessonRun) -> dict[str, Any]:
    lesson = run.lesson
    return evaluate_with(run, lambda model, x, device: predict(model, x, lesson.tta, lesson.channels_last, device))


KIND = LessonKind(schema=FastCifarLesson, train=train, evaluate=evaluate)
