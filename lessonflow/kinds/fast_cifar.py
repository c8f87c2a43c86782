"""The ``fast_cifar`` lesson kind: CIFAR-10 with airbench94's recipe (``lessonflow/fastcifar.py``).

Beyond the tutorial: ``cifar-resnet`` reproduces the tutorial's ResNet, which needs 80 GPU epochs
for its 87.79 %; this kind trains a small whitened net in a few epochs, which is what makes that
line reachable on a CPU. It shares the classifiers' loop, checkpoints, evaluation, predictions
(so ensembles can use it) and pictures; its own parts are the recipe and the test-time flips.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from lessonflow.contract import Checkpoint, Evaluated, Prepared, Saved, Trained
from lessonflow.fastcifar import Recipe, predict, train_fast
from lessonflow.kinds.classifier import scored_classifier, trained_classifier
from lessonflow.schema import SAMPLE_SOURCES, LessonBase, ModelParams, Strict, on_sample_data
from lessonflow.zoo import require_model



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
        require_model(self.model, "airbench", "the fast recipe")
        return self

    def for_source(self, data_source: str) -> FastCifarLesson:
        """The recipe as it trains on this data: the ``embedded`` budget's settings on the sample images."""
        return on_sample_data(self, data_source, SAMPLE_SOURCES)


Lesson = FastCifarLesson


def train(lesson: FastCifarLesson, *, name: str, data: Prepared, device: torch.device,
          checkpoint: Checkpoint) -> Trained:
    def fitter(model: torch.nn.Module, splits: Prepared):
        def validate() -> dict[str, float]:  # the clean validation images, no test-time flips: cheap
            logits = predict(model, splits["x_val"], 0, lesson.channels_last, device)
            return {"val_loss": F.cross_entropy(logits, splits["y_val"]).item(),
                    "val_accuracy": (logits.argmax(1) == splits["y_val"]).float().mean().item()}

        return train_fast(model, splits["x_train"], splits["y_train"], lesson, device=device, after_epoch=validate,
                          checkpoint=checkpoint)

    return trained_classifier(lesson, data, device, fitter, recipe="airbench94")


def evaluate(lesson: FastCifarLesson, *, name: str, data: Prepared, device: torch.device, saved: Saved) -> Evaluated:
    return scored_classifier(lesson, name, data, device, saved,
                             lambda model, x, on: predict(model, x, lesson.tta, lesson.channels_last, on))
