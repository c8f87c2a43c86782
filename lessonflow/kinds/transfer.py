"""The ``transfer`` lesson kind: a frozen backbone with a new head, beside the same network from scratch.

001 §7.5.4 / §7.5.6 freeze VGG16's or ResNet50's features and train a two-class head on cats and
dogs. The backbone is another lesson's saved network (``backbone:``, a DVC dependency) or, on the
full profile (``full:``), an ImageNet weights file (``weights:``), its ``features`` loaded, frozen and
run once per image: the seed ran them every epoch, for the same numbers. The same network trained
whole from fresh weights on the same few images is the baseline the transfer must beat; the
evaluation scores both on the same test images.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from lessonflow.backbones import checked_classes, class_subset, freeze, load_backbone, parts
from lessonflow.contract import BACKBONE, Checkpoint, Evaluated, Prepared, Saved, Trained
from lessonflow.datasets.weights import TORCHVISION
from lessonflow.kinds import classifier
from lessonflow.schema import ModelParams, Normalize, ParamsError, Strict
from lessonflow.training import predict_logits, train_classifier
from lessonflow.zoo import model_for, restored

SCRATCH = "scratch"  # the from-scratch network's state, beside the transfer lesson's model
SCRATCH_CURVES = {"scratch_train_loss": "scratch/train/loss", "scratch_val_accuracy": "scratch/val/accuracy"}


Network = Literal["vgg16", "resnet50"]  # the ImageNet weights files a lesson can freeze (datasets/weights.py)


class FullProfile(Strict):
    """What a transfer lesson learns from on the full profile, in place of its embedded settings."""

    dataset: str
    weights: Network
    model: ModelParams
    classes: list[int] = Field(min_length=2)
    train_images: int = Field(gt=0)
    normalize: Normalize | None = None


class TransferLesson(classifier.ClassifierLesson):
    """``backbone``: the lesson whose trained network is frozen, or ``weights``: the ImageNet network whose
    file is; ``classes``: the two classes (positions in the dataset's list; CIFAR-10's cat and dog are 3
    and 5); ``train_images``: how many of each it learns from; ``full``: all of these on the full profile."""

    backbone: str | None = None
    weights: Network | None = None
    classes: list[int] = Field(min_length=2)
    train_images: int = Field(gt=0)
    full: FullProfile | None = None

    @model_validator(mode="after")
    def _one_backbone(self) -> TransferLesson:
        if (self.backbone is None) == (self.weights is None):
            raise ParamsError("backbone: name either a backbone lesson (backbone: <lesson>) or ImageNet weights "
                              f"(weights: {' or '.join(TORCHVISION)}), not both nor neither")
        return self

    @property
    def weights_file(self) -> str | None:
        """The ImageNet file it freezes, in its dataset's raw folder; None for a backbone lesson's model."""
        return TORCHVISION[self.weights].file if self.weights else None

    def for_profile(self, profile: str) -> TransferLesson:
        """On the full profile, the ``full:`` block's data, network and weights in place of the embedded ones."""
        if profile != "full" or self.full is None:
            return self
        given = {key: value for key, value in dict(self.full).items() if value is not None}
        return self.model_copy(update={**given, "backbone": None, "full": None})


Lesson = TransferLesson


def few_images(lesson: TransferLesson, data: Prepared) -> Prepared:
    return class_subset(data, checked_classes(data, "classes", lesson.classes), lesson.train_images)


def head_data(backbone: torch.nn.Module, few: Prepared, lesson: TransferLesson, device: torch.device) -> Prepared:
    """The few images' splits as frozen features: what the head trains and is validated on."""
    found = {key: value for key, value in few.items() if not key.startswith("x_")}
    for split in ("train", "val"):
        found[f"x_{split}"] = predict_logits(backbone, few[f"x_{split}"], lesson.normalize, device)
    return found


def train(lesson: TransferLesson, *, name: str, data: Prepared, device: torch.device,
          checkpoint: Checkpoint) -> Trained:
    few = few_images(lesson, data)
    config = classifier.train_config(lesson)
    network = model_for(lesson.model, few)
    backbone, head = parts(network)
    if lesson.weights:
        load_backbone(backbone, data[BACKBONE], f"the ImageNet weights {lesson.weights_file}",
                      TORCHVISION[lesson.weights].prefix)
    else:
        load_backbone(backbone, data[BACKBONE], f"the model of backbone lesson {lesson.backbone!r}")
    freeze(backbone)
    started = time.perf_counter()
    features = head_data(backbone, few, lesson, device)
    feature_seconds = time.perf_counter() - started
    history = train_classifier(head, features, dataclasses.replace(config, normalize=None),
                               device=device, checkpoint=checkpoint)
    scratch = model_for(lesson.model, few)
    scratch_history = train_classifier(scratch, few, config, device=device, checkpoint=checkpoint.beside(SCRATCH))
    rows = [{**row, **{f"scratch_{key}": value for key, value in other.items() if key != "epoch"}}
            for row, other in zip(history.epochs, scratch_history.epochs, strict=True)]
    transfer_seconds = feature_seconds + history.train_seconds
    summary: dict[str, Any] = {
        "epochs": len(rows), "train_samples": len(few["y_train"]), "train_split": "train", "recipe": lesson.recipe,
        "backbone": lesson.backbone or lesson.weights_file, "feature_seconds": round(feature_seconds, 6),
        "transfer_seconds": round(transfer_seconds, 6), "scratch_seconds": round(scratch_history.train_seconds, 6),
        "trainable_parameters": sum(p.numel() for p in head.parameters()),
        "scratch_trainable_parameters": sum(p.numel() for p in scratch.parameters()),
    }
    return Trained(states={"model": network.cpu().state_dict(), SCRATCH: scratch.cpu().state_dict()},
                   seconds=transfer_seconds + scratch_history.train_seconds, device=device.type, summary=summary,
                   history=rows, curves={**classifier.CURVES, **SCRATCH_CURVES}, network=network)


def evaluate(lesson: TransferLesson, *, name: str, data: Prepared, device: torch.device, saved: Saved) -> Evaluated:
    few = few_images(lesson, data)
    logits_of = classifier.plain_logits(lesson.normalize)
    scratch = restored(model_for(lesson.model, few), saved.states[SCRATCH], device).eval()
    scratch_accuracy = (logits_of(scratch, few["x_test"], device).argmax(1) == few["y_test"]).float().mean().item()

    def beside(_: Prepared, predicted: torch.Tensor) -> dict[str, Any]:
        transfer = (predicted == few["y_test"]).float().mean().item()
        return {"scratch_test_accuracy": round(scratch_accuracy, 6),
                "transfer_gain": round(transfer - scratch_accuracy, 6),
                "backbone": lesson.backbone or lesson.weights_file}

    scored = classifier.scored_classifier(lesson, name, few, device, saved, logits_of, beside)
    return dataclasses.replace(scored, spread_also=("scratch_test_accuracy", "transfer_gain"))
