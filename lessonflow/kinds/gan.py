"""The ``gan`` lesson kind (001 §11): a generator and a discriminator trained against each other.

A GAN's losses do not say whether its digits look like digits, so training also fits a *judge*, an
ordinary classifier on the real training split (``judge:``; its own test accuracy is reported), which
rates a fixed batch of generated digits: how digit-like (mean top probability) and how varied (the
share of each class: a collapsed generator draws one digit). Training the judge here, rather than
reading another lesson's model, keeps the lesson's stages depending on its own params and code only.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from pydantic import Field
from torch.nn import functional as F

from lessonflow.contract import Checkpoint, Evaluated, Prepared, Saved, Trained
from lessonflow.figures import class_histogram, image_grid
from lessonflow.records import carried_facts
from lessonflow.training import (
    History, TrainConfig, TrainedLesson, Training, descend, make_optimizer, make_scheduler, predict_logits, run_epochs,
    score, to_inputs, train_classifier,
)
from lessonflow.zoo import model_for, restored

# The generator ends in Tanh, so real images are scaled to its range [-1, 1] (the seed's Normalize(0.5, 0.5)).
TANH_RANGE = (0.5, 0.5)
CURVES = {"d_loss": "train/d_loss", "g_loss": "train/g_loss",
          "real_score": "train/D_real", "fake_score": "train/D_fake"}
GRID = 64


class JudgeParams(Training):
    """The classifier that rates the generated digits, trained like a ``classifier`` lesson."""

    normalize: tuple[float, float] | None = None
    seed: int = 0


class GanLesson(TrainedLesson):
    """``model`` is a zoo GAN (``generator``, ``discriminator``, ``noise``); ``optimizer`` is used for both nets."""

    judge: JudgeParams
    samples: int = Field(1000, gt=0)  # generated digits the judge rates


Lesson = GanLesson


def train_gan(lesson: GanLesson, model: torch.nn.Module, data: Prepared, device: torch.device,
              checkpoint: Checkpoint) -> History:
    """The seed's alternating updates: D on a real and a fake batch, then G to make D call its fakes real."""
    cfg = TrainConfig.of(lesson)
    x_train = data["x_train"].to(device)
    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    d_optimizer, g_optimizer = make_optimizer(model.discriminator, cfg), make_optimizer(model.generator, cfg)
    d_scheduler = make_scheduler(d_optimizer, cfg, steps_per_epoch)
    g_scheduler = make_scheduler(g_optimizer, cfg, steps_per_epoch)

    def step(index: torch.Tensor) -> dict[str, torch.Tensor]:
        n = len(index)
        real, fake = torch.ones(n, device=device), torch.zeros(n, device=device)
        on_real = model.discriminator(to_inputs(x_train[index], TANH_RANGE))
        on_fake = model.discriminator(model.generator(torch.randn(n, model.noise, device=device)).detach())
        d_loss = F.binary_cross_entropy(on_real, real) + F.binary_cross_entropy(on_fake, fake)
        descend(d_loss, d_optimizer, d_scheduler)
        # G maximises log D(G(z)) rather than minimising log(1 - D(G(z))): stronger gradients early on
        fooled = model.discriminator(model.generator(torch.randn(n, model.noise, device=device)))
        g_loss = F.binary_cross_entropy(fooled, real)
        descend(g_loss, g_optimizer, g_scheduler)
        return {"d_loss": d_loss.detach() * n, "g_loss": g_loss.detach() * n,
                "real_score": on_real.detach().sum(), "fake_score": on_fake.detach().sum()}

    parts = {"model": model, "d_optimizer": d_optimizer, "g_optimizer": g_optimizer,
             "d_scheduler": d_scheduler, "g_scheduler": g_scheduler}
    return run_epochs(parts, step, epochs=cfg.epochs, n_train=len(x_train), batch_size=cfg.batch_size,
                      seed=cfg.seed, device=device, checkpoint=checkpoint)


def train(lesson: GanLesson, *, name: str, data: Prepared, device: torch.device, checkpoint: Checkpoint) -> Trained:
    """The GAN, then its judge from the judge's own seed."""
    model = model_for(lesson.model, data).to(device)
    history = train_gan(lesson, model, data, device, checkpoint)

    torch.manual_seed(lesson.judge.seed)
    judge = model_for(lesson.judge.model, data)
    started = time.perf_counter()
    judge_history = train_classifier(judge, data, TrainConfig.of(lesson.judge, normalize=lesson.judge.normalize),
                                     device=device, checkpoint=checkpoint.beside("judge"))
    judge_seconds = time.perf_counter() - started
    last = history.epochs[-1]
    return Trained(states={"model": model.cpu().state_dict(), "judge": judge.cpu().state_dict()},
                   seconds=history.train_seconds, device=device.type,
                   summary={"epochs": len(history.epochs), "final_d_loss": round(last["d_loss"], 6),
                            "final_g_loss": round(last["g_loss"], 6), "judge_seconds": round(judge_seconds, 3),
                            "judge_val_accuracy": round(judge_history.epochs[-1]["val_accuracy"], 6)},
                   history=history.epochs, curves=CURVES, network=model)


@torch.no_grad()
def generate(model: torch.nn.Module, count: int, seed: int, device: torch.device) -> torch.Tensor:
    """``count`` digits from noise fixed by ``seed``, as uint8 images like the dataset's."""
    model.eval()
    noise = torch.randn(count, model.noise, generator=torch.Generator().manual_seed(seed))
    images = model(noise.to(device)).float().cpu()
    return images.add(1).div(2).clamp(0, 1).mul(255).round().to(torch.uint8)


def evaluate(lesson: GanLesson, *, name: str, data: Prepared, device: torch.device, saved: Saved) -> Evaluated:
    model = restored(model_for(lesson.model, data), saved.states["model"], device)
    judge = restored(model_for(lesson.judge.model, data), saved.states["judge"], device)
    images = generate(model, lesson.samples, lesson.seed, device)
    probs = predict_logits(judge, images, lesson.judge.normalize, device).softmax(1)
    confidence, verdict = probs.max(1)
    classes = data["classes"]
    shares = torch.bincount(verdict, minlength=len(classes)).float() / len(verdict)
    _, judge_accuracy = score(judge, data["x_test"], data["y_test"], lesson.judge.normalize, device)
    real_confidence = predict_logits(judge, data["x_test"], lesson.judge.normalize, device).softmax(1).max(1).values
    trained = saved.metrics
    metrics = {
        "judge_mean_max_prob": round(confidence.mean().item(), 6),
        "judge_real_mean_max_prob": round(real_confidence.mean().item(), 6),
        "judge_class_share": {label: round(share, 6) for label, share in zip(classes, shares.tolist())},
        "judge_test_accuracy": round(judge_accuracy, 6),
        "samples": lesson.samples,
        "final_d_loss": trained["final_d_loss"], "final_g_loss": trained["final_g_loss"],
        "epochs": trained["epochs"], **carried_facts(trained),
    }
    shown = min(GRID, len(images))
    pictures = {
        "generated.png": image_grid(
            images[:shown].numpy(), [f"{classes[verdict[i]]} {confidence[i]:.2f}" for i in range(shown)],
            f"{name}: generated digits (judge's class and probability)"),
        "judge_classes.png": class_histogram(
            shares.numpy(), classes, f"{name}: judge's classes of {lesson.samples} generated digits",
            reference=1 / len(classes)),
    }
    return Evaluated(metrics, pictures, arrays={"generated.npz": {"images": images.numpy(), "judge_probs": probs.numpy()}})
