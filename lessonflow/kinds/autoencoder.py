"""The ``autoencoder`` lesson kind (001 §10): an image squeezed to a tiny code and rebuilt from it.

The seed computed its loss against the *labels*; here the target is the image itself,
as its own text says (y = x). Reported: reconstruction MSE per pixel on the test split
(pixels in [0, 1]), the train loss per epoch (the seed quotes ≈0.032–0.036), originals
beside their reconstructions, and the test digits in the 3-D code space.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from lessonflow.contract import Checkpoint, Evaluated, Prepared, Saved, Trained
from lessonflow.figures import code_scatter_3d, image_grid
from lessonflow.records import carried_facts
from lessonflow.training import (
    TrainConfig, TrainedLesson, descend, eval_batch_size, make_optimizer, make_scheduler, run_epochs, to_inputs,
)
from lessonflow.zoo import model_for, restored

CURVES = {"train_loss": "train/loss", "val_loss": "val/loss"}
SCATTER_POINTS = 3000  # enough to see the clusters, few enough to still see single points


class AutoencoderLesson(TrainedLesson):
    """An autoencoder (``model`` with ``encoder`` and ``decoder``) trained on MSE between image and output.

    Pixels stay in [0, 1], never normalised: the decoder ends in a Sigmoid, so the target shares its range.
    """


Lesson = AutoencoderLesson


@torch.no_grad()
def encode_decode(model: torch.nn.Module, x: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes, reconstructions) of uint8 images, in eval-sized chunks, on the CPU."""
    model.eval()
    codes, images = [], []
    for chunk in x.split(eval_batch_size(device)):
        code = model.encoder(to_inputs(chunk.to(device), None))
        codes.append(code.float().cpu())
        images.append(model.decoder(code).float().cpu())
    return torch.cat(codes), torch.cat(images)


def reconstruction_mse(model: torch.nn.Module, x: torch.Tensor, device: torch.device) -> float:
    """Mean squared error per pixel, the seed's ``MSELoss``, over a whole split."""
    _, rebuilt = encode_decode(model, x, device)
    return F.mse_loss(rebuilt, to_inputs(x, None)).item()


def train(lesson: AutoencoderLesson, *, name: str, data: Prepared, device: torch.device,
          checkpoint: Checkpoint) -> Trained:
    model = model_for(lesson.model, data).to(device)
    cfg = TrainConfig.of(lesson)
    x_train = data["x_train"].to(device)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, math.ceil(len(x_train) / cfg.batch_size))

    def step(index: torch.Tensor) -> dict[str, torch.Tensor]:
        images = to_inputs(x_train[index], None)
        loss = F.mse_loss(model(images), images)
        descend(loss, optimizer, scheduler)
        return {"train_loss": loss.detach() * len(index)}

    history = run_epochs({"model": model, "optimizer": optimizer, "scheduler": scheduler}, step,
                         epochs=cfg.epochs, n_train=len(x_train), batch_size=cfg.batch_size, seed=cfg.seed,
                         device=device, checkpoint=checkpoint,
                         after_epoch=lambda: {"val_loss": reconstruction_mse(model, data["x_val"], device)})
    return Trained(states={"model": model.cpu().state_dict()}, seconds=history.train_seconds, device=device.type,
                   summary={"epochs": len(history.epochs),
                            "final_train_loss": round(history.epochs[-1]["train_loss"], 6)},
                   history=history.epochs, curves=CURVES, network=model)


def one_per_class(labels: torch.Tensor, classes: list[str]) -> torch.Tensor:
    """Index of the first example of each class present, so the picture shows every digit once."""
    return torch.tensor([int((labels == c).nonzero()[0]) for c in range(len(classes)) if (labels == c).any()])


def to_pixels(images: torch.Tensor) -> np.ndarray:
    return images.clamp(0, 1).mul(255).round().to(torch.uint8).numpy()


def evaluate(lesson: AutoencoderLesson, *, name: str, data: Prepared, device: torch.device,
             saved: Saved) -> Evaluated:
    model = restored(model_for(lesson.model, data), saved.states["model"], device)
    x_test, y_test = data["x_test"], data["y_test"]
    codes, rebuilt = encode_decode(model, x_test, device)
    per_image = (rebuilt - to_inputs(x_test, None)).pow(2).flatten(1).mean(1)
    trained = saved.metrics
    metrics = {
        "test_mse": round(per_image.mean().item(), 6),
        "val_mse": round(reconstruction_mse(model, data["x_val"], device), 6),
        "final_train_loss": trained["final_train_loss"], "test_samples": len(y_test),
        "epochs": trained["epochs"], **carried_facts(trained),
    }
    shown = one_per_class(y_test, data["classes"])
    points = codes[:SCATTER_POINTS]
    images = {
        "reconstructions.png": image_grid(
            np.concatenate([x_test[shown].numpy(), to_pixels(rebuilt[shown])]),
            [f"original {data['classes'][y_test[i]]}" for i in shown] + [f"MSE {per_image[i]:.3f}" for i in shown],
            f"{name}: test originals (top) and reconstructions (bottom)", columns=len(shown)),
        "code_space.png": code_scatter_3d(
            np.pad(points.numpy()[:, :3], ((0, 0), (0, max(0, 3 - points.shape[1])))),
            y_test[:SCATTER_POINTS].numpy(), data["classes"],
            f"{name}: test digits in the code space (first 3 dimensions)"),
    }
    return Evaluated(metrics, images, arrays={"codes.npz": {"test_codes": codes.numpy(), "y_test": y_test.numpy()}})
