"""CIFAR-fast on the CPU: the airbench-style recipe against the tutorial's ResNet (BENCHMARKS.md, CIFAR-fast).

``probe`` extrapolates seconds per epoch from timed steps; ``train`` runs the recipe once and
records test accuracy against training seconds per epoch, then the TTA levels; ``tutorial``
draws the same curve for the tutorial's ResNet; ``plot`` puts runs on one figure.
``--data mirror`` decodes the mirror's JPEG CIFAR-10 once; ``--data embedded`` is a smoke test.
Usage: python benchmarks/cifar_fast.py {probe,train,tutorial} [--data mirror|embedded] [--epochs N] …
       python benchmarks/cifar_fast.py plot RUN.json [RUN.json ...] --out PATH
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from lessonflow.contract import Checkpoint  # noqa: E402
from lessonflow.datasets import mirror_root  # noqa: E402
from lessonflow.datasets.cifar import MIRROR_FILE, read_jpeg_zip, synthetic_images  # noqa: E402
from lessonflow.fastcifar import Recipe, accuracy, train_fast  # noqa: E402
from lessonflow.kinds.classifier import train_config  # noqa: E402
from lessonflow.params import load_params  # noqa: E402
from lessonflow.runtime import make_deterministic  # noqa: E402
from lessonflow.training import train_classifier  # noqa: E402
from lessonflow.zoo import build_model  # noqa: E402

AIRBENCH94_A100_SECONDS = 3.83  # legacy/airbench94.py: 94.01 % mean of 1 000 runs, 9.9 epochs
TUTORIAL_RESNET = {"name": "resnet_cifar", "kwargs": {"blocks": 4}, "batch_size": 100}


def load(data: str) -> tuple[torch.Tensor, ...]:
    if data == "embedded":
        x_train, y_train = synthetic_images(2000, seed=0)
        x_test, y_test = synthetic_images(400, seed=1)
        return x_train, y_train, x_test, y_test
    splits = read_jpeg_zip(mirror_root() / "cifar10" / MIRROR_FILE)
    return splits.x_train, splits.y_train, splits.x_test, splits.y_test


def step_seconds(model: nn.Module, batch: int, channels_last: bool, batches: int, lr: float = 1e-3) -> float:
    """Median seconds of one training step (forward, backward, Adam) on a random batch."""
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    times = []
    for _ in range(batches + 1):
        started = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    times = sorted(times[1:])
    return times[len(times) // 2]


def probe(args) -> list[dict]:
    nets = [("resnet_cifar (tutorial)", TUTORIAL_RESNET["kwargs"], TUTORIAL_RESNET["batch_size"])]
    widths = args.widths or lesson_recipe(args).model.kwargs()["widths"]
    nets += [(f"airbench widths {w}", {"widths": w}, 1024) for w in ([64, 256, 256], widths)]
    rows = []
    for label, kwargs, batch in nets:
        name = "resnet_cifar" if label.startswith("resnet") else "airbench"
        for channels_last in (False, True):
            model = build_model(name, kwargs, in_shape=(3, 32, 32), num_classes=10)
            per_step = step_seconds(model, batch, channels_last, args.batches)
            row = {"net": label, "channels_last": channels_last, "batch": batch,
                   "epoch_seconds": round(per_step * 50_000 / batch, 1)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def lesson_recipe(args) -> Recipe:
    """``cifar-fast`` as params.yaml has it, with the command line's changes: the pipeline's own settings."""
    lesson = load_params(ROOT / "params.yaml").lessons["cifar-fast"]
    changes = {"seed": args.seed, "channels_last": not args.no_channels_last}
    if args.epochs:
        changes["epochs"] = args.epochs
    if args.widths:
        changes["model"] = lesson.model.model_copy(update={"widths": args.widths})
    return lesson.model_copy(update=changes)


def curve_of(history, accuracy_key: str) -> tuple[float, list[dict]]:
    """(training seconds, per-epoch rows): the cumulative training time, each epoch's evaluation left out."""
    elapsed, curve = 0.0, []
    for record in history.epochs:
        elapsed += record["seconds"] - record["eval_seconds"]
        curve.append({"epoch": record["epoch"], "train_seconds": round(elapsed, 1),
                      "train_loss": round(record["train_loss"], 4), "test_accuracy": record[accuracy_key]})
    return elapsed, curve


def train(args) -> dict:
    """The fast recipe, ``cifar-fast`` as params.yaml has it: test accuracy after every epoch, then with TTA."""
    x_train, y_train, x_test, y_test = load(args.data)
    recipe = lesson_recipe(args)
    torch.manual_seed(args.seed)
    model = build_model("airbench", recipe.model.kwargs(), in_shape=(3, 32, 32), num_classes=10)

    def test_accuracy() -> dict[str, float]:
        return {"test_accuracy": accuracy(model, x_test, y_test, 0, recipe.channels_last)}

    with tempfile.TemporaryDirectory() as tmp:
        history = train_fast(model, x_train, y_train, recipe, checkpoint=Checkpoint(Path(tmp) / "ckpt.pt", "bench", "cifar-fast"),
                             after_epoch=test_accuracy)
    elapsed, curve = curve_of(history, "test_accuracy")
    tta = {f"tta{level}": accuracy(model, x_test, y_test, level, recipe.channels_last) for level in (0, 1, 2)}
    widths = recipe.model.kwargs()["widths"]
    return {"net": f"cifar-fast: airbench widths {widths}", "data": args.data, "seed": args.seed, "widths": widths,
            "epochs": recipe.epochs, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "train_seconds": round(elapsed, 1), "curve": curve, **tta, "final_accuracy": tta[f"tta{recipe.tta}"],
            "cpu_over_airbench94_a100": round(elapsed / AIRBENCH94_A100_SECONDS)}


def tutorial(args) -> dict:
    """The tutorial's ResNet, ``cifar-resnet`` as params.yaml has it (augmentation included), for ``--epochs``."""
    x_train, y_train, x_test, y_test = load(args.data)
    lesson = load_params(ROOT / "params.yaml").lessons["cifar-resnet"]
    cfg = dataclasses.replace(train_config(lesson), epochs=args.epochs or 2, seed=args.seed)
    make_deterministic(args.seed)
    model = build_model(lesson.model.name, lesson.model.kwargs(), in_shape=(3, 32, 32), num_classes=10)
    data = {"x_train": x_train, "y_train": y_train, "x_val": x_test, "y_val": y_test}  # "val": the test images
    with tempfile.TemporaryDirectory() as tmp:
        history = train_classifier(model, data, cfg, device=torch.device("cpu"), checkpoint=Checkpoint(Path(tmp) / "ckpt.pt", "bench", "cifar-resnet"))
    elapsed, curve = curve_of(history, "val_accuracy")
    return {"net": "cifar-resnet: the tutorial's ResNet", "data": args.data, "seed": args.seed, "epochs": cfg.epochs,
            "threads": torch.get_num_threads(), "torch": torch.__version__, "train_seconds": round(elapsed, 1),
            "curve": curve, "final_accuracy": curve[-1]["test_accuracy"],
            "seconds_per_epoch": round(elapsed / cfg.epochs, 1)}


def write(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["epoch\ttrain_seconds\ttrain_loss\ttest_accuracy"]
    lines += [f"{c['epoch']}\t{c['train_seconds']}\t{c['train_loss']}\t{c['test_accuracy']:.4f}" for c in result["curve"]]
    out.with_suffix(".tsv").write_text("\n".join(lines) + "\n")


def plot(runs: list[Path], out: Path) -> None:
    """Accuracy against training minutes, one line per run, the final test-time-augmented accuracy as a dot."""
    from lessonflow.figures import plt

    figure, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for path in runs:
        run = json.loads(path.read_text())
        minutes = [row["train_seconds"] / 60 for row in run["curve"]]
        line, = ax.plot(minutes, [row["test_accuracy"] for row in run["curve"]], marker="o", markersize=3,
                        label=f"{run['net']}, seed {run['seed']}")
        if "tta2" in run:
            ax.scatter([minutes[-1]], [run["final_accuracy"]], color=line.get_color(), marker="*", s=80, zorder=3)
    ax.axhline(0.8779, ls="--", color="gray", label="the tutorial's 87.79 % (80 GPU epochs)")
    ax.set(xlabel="training minutes (2 CPU threads, evaluation excluded)",
           ylabel="test accuracy (no TTA; star: with TTA)", title="CIFAR-10 on the CPU: accuracy against training time")
    ax.grid(True, alpha=0.4)
    ax.legend(fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out.with_suffix(".png"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["probe", "train", "tutorial", "plot"])
    parser.add_argument("runs", nargs="*", type=Path, help="plot: the .json files of train/tutorial runs")
    parser.add_argument("--data", choices=["mirror", "embedded"], default="mirror")
    parser.add_argument("--epochs", type=int, default=None, help="default: cifar-fast's in params.yaml")
    parser.add_argument("--widths", type=int, nargs=3, default=None, help="default: cifar-fast's in params.yaml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=5, help="probe: timed steps per net and layout")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cifar_fast"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.command == "probe":
        rows = probe(args)
        Path(args.out).with_name(Path(args.out).name + "_probe.json").write_text(json.dumps(rows, indent=1) + "\n")
    elif args.command == "plot":
        plot(args.runs, Path(args.out))
    else:
        result = (train if args.command == "train" else tutorial)(args)
        write(result, Path(args.out))
        print(json.dumps({key: value for key, value in result.items() if key != "curve"}, indent=1))


if __name__ == "__main__":
    main()
