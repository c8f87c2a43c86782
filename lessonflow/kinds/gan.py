"""The ``gan`` lesson kind (001 §11): a generator and a discriminator trained against each other.

A GAN's losses do not say whether its digits look like digits, so the train stage also
trains a *judge*, an ordinary classifier on the real training split (its settings under
``judge:``; its own test accuracy is reported so its verdict can be trusted). The judge
then rates a fixed batch of generated digits: the mean of its highest class probability
(how digit-like they are) and the share of each class (how varied: a collapsed generator
draws one digit). Training the judge here, not reading another lesson's model, keeps the
lesson's DVC stages depending on its own params and code only.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch.nn import functional as F

from lessonflow.atomic import atomic_path
from lessonflow.datasets import load_prepared
from lessonflow.figures import class_histogram, image_grid
from lessonflow.kinds import LessonKind
from lessonflow.lessons import LessonRun
from lessonflow.records import carried_facts, live_log, log_curves, outputs_of, read_metrics, run_facts
from lessonflow.runtime import make_deterministic, pick_device
from lessonflow.training import (
    TrainConfig, TrainedLesson, Training, descend, make_optimizer, make_scheduler, predict_logits, run_epochs,
    score, to_inputs, train_classifier,
)
from lessonflow.zoo import build_model

# The generator ends in Tanh, so real images are scaled to its range [-1, 1] (the seed's Normalize(0.5, 0.5)).
TANH_RANGE = (0.5, 0.5)
CURVES = {"d_loss": "train/d_loss", "g_loss": "train/g_loss",
          "real_score": "train/D_real", "fake_score": "train/D_fake"}
GRID = 64
JUDGE_MODEL = "judge.pt"
JUDGE_CHECKPOINT = "judge-checkpoint.pt"


class JudgeParams(Training):
    """The classifier that rates the generated digits, trained like a ``classifier`` lesson."""

    normalize: tuple[float, float] | None = None
    seed: int = 0


class GanLesson(TrainedLesson):
    """``model`` is a zoo GAN (``generator``, ``discriminator``, ``noise``); ``optimizer`` is used for both nets."""

    judge: JudgeParams
    samples: int = Field(1000, gt=0)  # generated digits the judge rates


def build(spec: Any, data: dict[str, Any]) -> torch.nn.Module:
    return build_model(spec.model.name, spec.model.kwargs(),
                       in_shape=tuple(data["x_train"].shape[1:]), num_classes=len(data["classes"]))


def train_gan(run: LessonRun, model: torch.nn.Module, data: dict[str, Any], device: torch.device, fingerprint: str):
    """The seed's alternating updates: D on a real and a fake batch, then G to make D call its fakes real."""
    lesson = run.lesson
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
                      seed=cfg.seed, device=device, checkpoint=run.layout.checkpoint(run.lesson_id),
                      fingerprint=fingerprint, label=run.lesson_id)


def train(run: LessonRun) -> None:
    lesson, layout = run.lesson, run.layout
    data, device, fingerprint = run.start_training()
    model = build(lesson, data).to(device)
    history = train_gan(run, model, data, device, fingerprint)

    make_deterministic(lesson.judge.seed)
    judge = build(lesson.judge, data)
    started = time.perf_counter()
    judge_history = train_classifier(judge, data, TrainConfig.of(lesson.judge, normalize=lesson.judge.normalize),
                                     device=device, checkpoint=layout.model(run.lesson_id).with_name(JUDGE_CHECKPOINT),
                                     fingerprint=fingerprint, label=f"{run.lesson_id} judge")
    judge_seconds = time.perf_counter() - started

    with atomic_path(layout.model(run.lesson_id)) as tmp:
        torch.save(model.cpu().state_dict(), tmp)
    with atomic_path(layout.model(run.lesson_id).with_name(JUDGE_MODEL)) as tmp:
        torch.save(judge.cpu().state_dict(), tmp)
    last = history.epochs[-1]
    with live_log(layout.train_log(run.lesson_id)) as live:
        log_curves(live, history.epochs, CURVES)
        live.summary.update(**run_facts(history.train_seconds, device.type, data["source"], lesson.seed,
                                        layout.model(run.lesson_id), model),
                            epochs=len(history.epochs),
                            final_d_loss=round(last["d_loss"], 6), final_g_loss=round(last["g_loss"], 6),
                            judge_seconds=round(judge_seconds, 3),
                            judge_val_accuracy=round(judge_history.epochs[-1]["val_accuracy"], 6))


@torch.no_grad()
def generate(model: torch.nn.Module, count: int, seed: int, device: torch.device) -> torch.Tensor:
    """``count`` digits from noise fixed by ``seed``, as uint8 images like the dataset's."""
    model.eval()
    noise = torch.randn(count, model.noise, generator=torch.Generator().manual_seed(seed))
    images = model(noise.to(device)).float().cpu()
    return images.add(1).div(2).clamp(0, 1).mul(255).round().to(torch.uint8)


def evaluate(run: LessonRun) -> dict[str, Any]:
    lesson, layout = run.lesson, run.layout
    device = pick_device(run.params.device)
    data = load_prepared(layout.prepared(lesson.dataset))
    model, judge = build(lesson, data), build(lesson.judge, data)
    model.load_state_dict(torch.load(layout.model(run.lesson_id), weights_only=True))
    judge.load_state_dict(torch.load(layout.model(run.lesson_id).with_name(JUDGE_MODEL), weights_only=True))
    model.to(device)
    judge.to(device)
    images = generate(model, lesson.samples, lesson.seed, device)
    probs = predict_logits(judge, images, lesson.judge.normalize, device).softmax(1)
    confidence, verdict = probs.max(1)
    classes = data["classes"]
    shares = torch.bincount(verdict, minlength=len(classes)).float() / len(verdict)
    _, judge_accuracy = score(judge, data["x_test"], data["y_test"], lesson.judge.normalize, device)
    real_confidence = predict_logits(judge, data["x_test"], lesson.judge.normalize, device).softmax(1).max(1).values
    trained = read_metrics(layout.train_log(run.lesson_id))
    metrics = {
        "judge_mean_max_prob": round(confidence.mean().item(), 6),
        "judge_real_mean_max_prob": round(real_confidence.mean().item(), 6),
        "judge_class_share": {name: round(share, 6) for name, share in zip(classes, shares.tolist())},
        "judge_test_accuracy": round(judge_accuracy, 6),
        "samples": lesson.samples,
        "final_d_loss": trained["final_d_loss"], "final_g_loss": trained["final_g_loss"],
        "epochs": trained["epochs"], **carried_facts(trained),
    }
    shown = min(GRID, len(images))
    with live_log(layout.eval_log(run.lesson_id)) as live:
        live.summary.update(metrics)
        with (outputs_of(live) / "generated.npz").open("wb") as fh:
            np.savez_compressed(fh, images=images.numpy(), judge_probs=probs.numpy())
        live.log_image("generated.png", image_grid(
            images[:shown].numpy(), [f"{classes[verdict[i]]} {confidence[i]:.2f}" for i in range(shown)],
            f"{run.lesson_id}: generated digits (judge's class and probability)"))
        live.log_image("judge_classes.png", class_histogram(
            shares.numpy(), classes, f"{run.lesson_id}: judge's classes of {lesson.samples} generated digits",
            reference=1 / len(classes)))
    return metrics


KIND = LessonKind(schema=GanLesson, train=train, evaluate=evaluate)
