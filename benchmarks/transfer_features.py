"""A frozen backbone's features once per image against once per epoch (BENCHMARKS.md, Transfer learning).

The seed (001 §7.5.4 / §7.5.6) runs every batch through its frozen backbone in every epoch; the
``transfer`` kind runs each image through it once and trains the head on the stored features.
Both loops below train the same head with the same batches for the same epochs, in one process,
so their ratio is what computing the features once saves; the models are the catdog lessons'.
Usage: python benchmarks/transfer_features.py [--images N] [--epochs N] [--batch-size N] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from lessonflow.backbones import freeze, parts  # noqa: E402
from lessonflow.datasets.cifar import synthetic_images  # noqa: E402
from lessonflow.params import load_params  # noqa: E402
from lessonflow.training import epoch_batches, predict_logits, to_inputs  # noqa: E402
from lessonflow.zoo import model_for  # noqa: E402

LESSONS = ("catdog-vgg16", "catdog-resnet50")


def head_steps(head: nn.Module, inputs_of, n: int, epochs: int, batch_size: int) -> None:
    """Adam steps of the head over ``epochs`` shuffles; ``inputs_of(index)`` gives a batch's head inputs."""
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    labels = torch.arange(n) % 2
    head.train()
    for epoch in range(epochs):
        for index in epoch_batches(n, batch_size, 0, epoch):
            loss = nn.functional.cross_entropy(head(inputs_of(index)), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def compare(lesson_id: str, images: torch.Tensor, epochs: int, batch_size: int) -> dict[str, float]:
    lesson = load_params(ROOT / "params.yaml", lessons=[lesson_id]).lessons[lesson_id]
    network = model_for(lesson.model, {"x_train": images, "classes": ["cat", "dog"]})
    backbone, head = parts(network)
    freeze(backbone)
    cpu, normalize = torch.device("cpu"), tuple(lesson.normalize)

    def seed_loop() -> None:  # the seed: the frozen backbone runs in every step of every epoch
        def inputs_of(index):
            with torch.no_grad():
                return backbone(to_inputs(images[index], normalize))
        head_steps(head, inputs_of, len(images), epochs, batch_size)

    def once() -> None:  # the kind: one pass over the images, then the head on stored features
        features = predict_logits(backbone, images, normalize, cpu)
        head_steps(head, lambda index: features[index], len(images), epochs, batch_size)

    return {"seed_loop_seconds": timed(seed_loop), "features_once_seconds": timed(once)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="training images (synthetic CIFAR)")
    parser.add_argument("--epochs", type=int, default=30, help="the embedded lessons' epochs")
    parser.add_argument("--batch-size", type=int, default=16, help="the seed's batch")
    parser.add_argument("--repeats", type=int, default=3, help="runs per loop; the fastest is kept")
    args = parser.parse_args()
    torch.manual_seed(0)
    images = synthetic_images(args.images, 0)[0]
    results = {}
    for lesson_id in LESSONS:
        runs = [compare(lesson_id, images, args.epochs, args.batch_size) for _ in range(args.repeats)]
        best = {key: min(run[key] for run in runs) for key in runs[0]}
        results[lesson_id] = {**{key: round(value, 3) for key, value in best.items()},
                              "speedup": round(best["seed_loop_seconds"] / best["features_once_seconds"], 2)}
    print(json.dumps({"images": args.images, "epochs": args.epochs, "batch_size": args.batch_size,
                      "threads": torch.get_num_threads(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
