"""The ``style_transfer`` lesson kind (001 §8): Gatys' method, LBFGS on the pixels of the content photo.

The seed's network: VGG16 ``features[:8]``, its four convolutions named Conv_1..Conv_4, the content
loss at Conv_3 and Gram-matrix style losses at all four, each weight multiplying both sides of its
squared error as the seed wrote it. Fixed: ``.data[0]`` read as ``.item()``, any device, ImageNet
normalisation of the pixels, the result clamped to [0, 1]. What the model is, random or ImageNet
filters, comes with the data (``lessonflow/datasets/images.py``) and is named in the metrics.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn
from torch.nn import functional as F

from lessonflow.contract import Checkpoint, Evaluated, Prepared, Saved, Trained
from lessonflow.figures import image_grid, plt
from lessonflow.records import carried_facts
from lessonflow.schema import LessonBase, Strict

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CONVOLUTIONS = 4  # in VGG16 features[:8]
VGG16_START = [64, 64, "M", 128, 128]  # torchvision's VGG16 configuration up to its fourth convolution
CURVES = {"style_loss": "train/style_loss", "content_loss": "train/content_loss"}


class Budget(Strict):
    """Settings that replace the seed's on the embedded photos, where a CPU build must stay short."""

    size: int | None = Field(None, gt=0)
    closure_calls: int | None = Field(None, gt=0)
    style_weight: float | None = Field(None, gt=0)
    line_search: Literal["strong_wolfe"] | None = None


class StyleTransferLesson(LessonBase):
    """Gatys' style transfer as the seed set it up: square ``size`` images, LBFGS for ``closure_calls`` losses."""

    size: int = Field(224, gt=0)
    closure_calls: int = Field(300, gt=0)
    content_layers: list[int] = [3]
    style_layers: list[int] = [1, 2, 3, 4]
    content_weight: float = Field(1.0, gt=0)
    style_weight: float = Field(1000.0, gt=0)
    line_search: Literal["strong_wolfe"] | None = None  # the seed's LBFGS has none
    embedded: Budget | None = None

    @field_validator("content_layers", "style_layers")
    @classmethod
    def _convolutions(cls, layers: list[int]) -> list[int]:
        if not layers or any(not 1 <= layer <= CONVOLUTIONS for layer in layers):
            raise ValueError(f"pick one or more of the convolutions 1..{CONVOLUTIONS} (Conv_1..Conv_4)")
        return layers

    def for_source(self, data_source: str) -> StyleTransferLesson:
        budget = self.embedded.model_dump(exclude_none=True) if self.embedded and data_source == "embedded" else {}
        return self.model_copy(update={**budget, "embedded": None})


Lesson = StyleTransferLesson


def extractor(data: Prepared, seed: int) -> nn.Sequential:
    """VGG16 ``features[:8]``, frozen: the prepared filters, or random ones drawn from ``seed`` as torchvision
    initialises a VGG16's convolutions (drawing the whole untrained VGG16 costs seconds, its classifier most)."""
    from torchvision.models.vgg import make_layers

    features = make_layers(VGG16_START)[:8]
    if data["weights"]:
        features.load_state_dict(data["weights"])
    else:
        generator = torch.Generator().manual_seed(seed)
        for conv in (layer for layer in features if isinstance(layer, nn.Conv2d)):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            nn.init.zeros_(conv.bias)
    return features.eval().requires_grad_(False)


def photo(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """A (3, H, W) uint8 photo as the seed loads it: resized to ``size``×``size``, in [0, 1], batch of one."""
    image = pixels.float().div(255).unsqueeze(0)
    return F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def convolutions(features: nn.Sequential, image: torch.Tensor) -> list[torch.Tensor]:
    """The output of each convolution (before its ReLU, where the seed put its losses) for an image in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(1, 3, 1, 1)
    x, found = (image - mean) / std, []
    for layer in features:
        x = F.relu(x) if isinstance(layer, nn.ReLU) else layer(x)  # not in place: the conv output is kept
        if isinstance(layer, nn.Conv2d):
            found.append(x)
    return found


def gram(feature: torch.Tensor) -> torch.Tensor:
    a, b, c, d = feature.shape
    flat = feature.reshape(a * b, c * d)
    return flat @ flat.t() / (a * b * c * d)


@dataclass(frozen=True)
class Losses:
    """The targets of the content and style losses, and the two losses of any image against them."""

    features: nn.Sequential
    lesson: StyleTransferLesson
    content: dict[int, torch.Tensor]
    style: dict[int, torch.Tensor]

    @classmethod
    def of(cls, features: nn.Sequential, lesson: StyleTransferLesson, content: torch.Tensor,
           style: torch.Tensor) -> Losses:
        with torch.no_grad():
            of_content, of_style = convolutions(features, content), convolutions(features, style)
        return cls(features, lesson, {n: of_content[n - 1] for n in lesson.content_layers},
                   {n: gram(of_style[n - 1]) for n in lesson.style_layers})

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(style loss, content loss) of ``image``, summed over their layers."""
        found, cw, sw = convolutions(self.features, image), self.lesson.content_weight, self.lesson.style_weight
        style = sum(F.mse_loss(gram(found[n - 1]) * sw, target * sw) for n, target in self.style.items())
        content = sum(F.mse_loss(found[n - 1] * cw, target * cw) for n, target in self.content.items())
        return style, content


def losses_for(lesson: StyleTransferLesson, data: Prepared, device: torch.device) -> tuple[Losses, torch.Tensor]:
    """The lesson's losses and its content photo, both on ``device``."""
    features = extractor(data, lesson.seed).to(device)
    content, style = (photo(data[role], lesson.size).to(device) for role in ("content", "style"))
    return Losses.of(features, lesson, content, style), content


@contextmanager
def one_cpu_thread(device: torch.device) -> Iterator[None]:
    """One CPU thread while inside: these small pictures gain nothing from more, lose much when other work
    shares the cores (BENCHMARKS.md, "Style transfer"), and give the same bits on any number of cores."""
    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(lesson: StyleTransferLesson, *, name: str, data: Prepared, device: torch.device,
          checkpoint: Checkpoint) -> Trained:
    with one_cpu_thread(device):
        return transfer(lesson, data, device)


def transfer(lesson: StyleTransferLesson, data: Prepared, device: torch.device) -> Trained:
    """LBFGS on the content photo's pixels, as the seed's loop: whole steps until the closure calls are spent."""
    losses, content = losses_for(lesson, data, device)
    pixels = nn.Parameter(content.clone())
    optimizer = torch.optim.LBFGS([pixels], line_search_fn=lesson.line_search)
    history: list[dict[str, float]] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        with torch.no_grad():
            pixels.clamp_(0, 1)
        style, content_loss = losses(pixels)
        total = style + content_loss
        total.backward()
        history.append({"style_loss": style.item(), "content_loss": content_loss.item()})
        return total

    started = time.perf_counter()
    while len(history) < lesson.closure_calls:
        optimizer.step(closure)
    seconds = time.perf_counter() - started
    result = pixels.detach().clamp(0, 1)[0].cpu()
    return Trained(states={"model": {"image": result}}, seconds=seconds, device=device.type,
                   summary={"closure_calls": len(history), "size": lesson.size,
                            "final_style_loss": round(history[-1]["style_loss"], 6),
                            "final_content_loss": round(history[-1]["content_loss"], 6)},
                   history=history, curves=CURVES)


def to_pixels(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] as uint8."""
    return image.clamp(0, 1).mul(255).round().to(torch.uint8).numpy()


def alone(pixels: np.ndarray, title: str):
    """The result at its own size, one pixel of the image per pixel of the picture."""
    height, width = pixels.shape[1:]
    figure = plt.figure(figsize=(width / 100, height / 100 + 0.3), dpi=100)
    axes = figure.add_axes((0, 0, 1, height / (height + 30)))
    axes.imshow(pixels.transpose(1, 2, 0), interpolation="nearest")
    axes.axis("off")
    figure.suptitle(title, fontsize=8)
    return figure


def evaluate(lesson: StyleTransferLesson, *, name: str, data: Prepared, device: torch.device,
             saved: Saved) -> Evaluated:
    losses, content = losses_for(lesson, data, device)
    result = saved.states["model"]["image"].to(device).unsqueeze(0)
    with torch.no_grad(), one_cpu_thread(device):
        (style_start, _), (style_end, content_end) = losses(content), losses(result)
        _, content_of_style = losses(photo(data["style"], lesson.size).to(device))
    trained = saved.metrics
    metrics = {
        "final_loss": round((style_end + content_end).item(), 6),
        "style_loss_start": round(style_start.item(), 6), "style_loss_final": round(style_end.item(), 6),
        "style_loss_reduction": round(style_start.item() / max(style_end.item(), 1e-12), 3),
        "content_loss_final": round(content_end.item(), 6),
        "content_loss_of_style_photo": round(content_of_style.item(), 6),  # a result that forgot the content
        "pixel_change": round((result - content).abs().mean().item(), 6),  # mean |result - content| in [0, 1]
        "closure_calls": trained["closure_calls"], "size": lesson.size,
        "content_image": data["names"]["content"], "style_image": data["names"]["style"],
        "features": data["extractor"], "image_credits": data["credits"], **carried_facts(trained),
    }
    if not data["weights"]:
        metrics["known_limit"] = ("random VGG16 filters, not ImageNet's: the style they capture is texture seen "
                                  "by untrained filters, not the seed's picture")
    shown = np.stack([to_pixels(photo(data[role], lesson.size)[0]) for role in ("content", "style")]
                     + [to_pixels(result[0].cpu())])
    images = {
        "side_by_side.png": image_grid(shown, ["content", "style", "result"], f"{name}: content, style, result",
                                       columns=3),
        "result.png": alone(shown[-1], f"{name}: result ({trained['closure_calls']} LBFGS closure calls)"),
    }
    return Evaluated(metrics, images, arrays={"result.npz": {"image": shown[-1]}})
