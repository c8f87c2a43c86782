"""The ``backbone`` lesson kind: a classifier trained without some classes, for a transfer lesson to reuse.

Without ImageNet weights on the embedded profile, the transfer lessons' "model trained earlier
for another problem" is trained here: the lesson's network on the dataset's other classes
(CIFAR-10 without cat and dog, as LESSONS.md section 7 asks; reusing ``cifar-resnet`` would
leak, since it saw both). It is an ordinary classifier otherwise: the same loop, scores and pictures.
"""

from __future__ import annotations

import torch
from pydantic import Field

from lessonflow.backbones import checked_classes, class_subset
from lessonflow.contract import Checkpoint, Evaluated, Prepared, Saved, Trained
from lessonflow.kinds import classifier


class BackboneLesson(classifier.ClassifierLesson):
    """``held_out_classes``: positions in the dataset's class list it never sees (CIFAR-10's cat and dog: 3, 5)."""

    held_out_classes: list[int] = Field(min_length=1)


Lesson = BackboneLesson


def seen(lesson: BackboneLesson, data: Prepared) -> Prepared:
    """The prepared splits without the held-out classes, relabelled."""
    held_out = checked_classes(data, "held_out_classes", lesson.held_out_classes)
    return class_subset(data, [index for index in range(len(data["classes"])) if index not in held_out])


def train(lesson: BackboneLesson, *, name: str, data: Prepared, device: torch.device,
          checkpoint: Checkpoint) -> Trained:
    return classifier.train(lesson, name=name, data=seen(lesson, data), device=device, checkpoint=checkpoint)


def evaluate(lesson: BackboneLesson, *, name: str, data: Prepared, device: torch.device, saved: Saved) -> Evaluated:
    return classifier.evaluate(lesson, name=name, data=seen(lesson, data), device=device, saved=saved)
