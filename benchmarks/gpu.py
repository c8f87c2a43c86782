"""The GPU measurement: ``mnist-cnn``, ``cifar-resnet`` and ``cifar-fast`` trained on the full data, time and accuracy.

Trains through lessonflow's own loop, so what ``lessonflow/accel.py`` decides (bf16 autocast,
channels-last, cuDNN autotuning, ``--compile``) is what is measured, and sets the CIFAR-10 result
beside airbench's published one (Jordan 2024). ``--smoke`` runs the same code on the CPU on the
embedded data for one epoch: CI's check that the script works, not a measurement.
Usage: python benchmarks/gpu.py [--smoke] [--compile] [--cifar-epochs N] [--recipe fast|tutorial]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lessonflow import accel  # noqa: E402
from lessonflow.contract import Checkpoint  # noqa: E402
from lessonflow.datasets import download_dataset, load_prepared, prepare_dataset  # noqa: E402
from lessonflow.fastcifar import accuracy, train_fast  # noqa: E402
from lessonflow.kinds.classifier import train_config  # noqa: E402
from lessonflow.params import DatasetParams, load_params  # noqa: E402
from lessonflow.runtime import make_deterministic, pick_device  # noqa: E402
from lessonflow.training import score, train_classifier  # noqa: E402
from lessonflow.zoo import build_model  # noqa: E402

AIRBENCH = {"test_accuracy": 0.94, "seconds": 3.3, "gpu": "A100"}
RESULTS = ROOT / "benchmarks" / "results"


def prepared(name: str, source: str, work: Path) -> dict:
    params = DatasetParams(source=source)
    raw, out = work / f"raw-{name}", work / f"{name}.pt"
    download_dataset(name, params, "full" if source == "mirror" else "embedded", raw)
    prepare_dataset(name, params, raw, out)
    return load_prepared(out)


def measure(lesson_id: str, lesson, data: dict, device: torch.device, work: Path, epochs: int | None,
            compile_model: bool) -> dict:
    cfg = train_config(lesson)
    changes = {"deterministic": False, "compile": compile_model}
    if epochs:
        changes["epochs"] = epochs
    cfg = type(cfg)(**{**cfg.__dict__, **changes})
    make_deterministic(lesson.seed)
    model = build_model(lesson.model.name, lesson.model.kwargs(), in_shape=tuple(data["x_train"].shape[1:]),
                        num_classes=len(data["classes"]))
    plan = accel.plan_for(device, image_inputs=data["x_train"].dim() == 4, deterministic=False,
                          compile_requested=compile_model)
    started = time.perf_counter()
    history = train_classifier(model, data, cfg, device=device, checkpoint=Checkpoint(work / f"{lesson_id}.ckpt", "gpu-bench", lesson_id),
                               progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - started
    _, accuracy = score(model, data["x_test"], data["y_test"], cfg.normalize, device)
    return {"recipe": lesson.recipe, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
            "optimizer": cfg.optimizer, "schedule": cfg.schedule,
            "autocast": str(plan.autocast_dtype), "channels_last": plan.channels_last, "compile": plan.compile,
            "train_seconds": round(history.train_seconds, 2), "wall_seconds": round(wall, 2),
            "test_accuracy": round(accuracy, 4), "train_images": len(data["y_train"]),
            "data_source": data["source"]}


def measure_fast(lesson, data: dict, device: torch.device, work: Path, epochs: int | None) -> dict:
    """``cifar-fast``: the airbench-style recipe, timed as on the CPU (training only, then the flipped test pass)."""
    recipe = lesson.model_copy(update={"epochs": epochs}) if epochs else lesson
    make_deterministic(lesson.seed)
    model = build_model(lesson.model.name, lesson.model.kwargs(), in_shape=tuple(data["x_train"].shape[1:]),
                        num_classes=len(data["classes"]))
    started = time.perf_counter()
    history = train_fast(model, data["x_train"], data["y_train"], recipe, checkpoint=Checkpoint(work / "cifar-fast.ckpt", "gpu-bench", "cifar-fast"),
                         device=device, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - started
    return {"recipe": "airbench94", "epochs": recipe.epochs, "batch_size": recipe.batch_size,
            "widths": lesson.model.kwargs().get("widths"), "train_seconds": round(history.train_seconds, 2),
            "wall_seconds": round(wall, 2), "train_images": len(data["y_train"]), "data_source": data["source"],
            "test_accuracy": round(accuracy(model, data["x_test"], data["y_test"], recipe.tta, recipe.channels_last,
                                            device), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, embedded stand-in data, one epoch")
    parser.add_argument("--compile", action="store_true", help="torch.compile the models")
    parser.add_argument("--recipe", choices=["fast", "tutorial"], default="fast",
                        help="mnist-cnn's recipe (cifar-resnet has only its tutorial one)")
    parser.add_argument("--cifar-epochs", type=int, default=None, help="default: the lesson's own")
    args = parser.parse_args()
    os.environ.setdefault("LESSONFLOW_DATA_MIRROR", str(ROOT.parent / "shared" / "data"))
    device = pick_device("cpu" if args.smoke else "cuda")
    lessons = load_params(ROOT / "params.yaml").lessons
    source = "embedded" if args.smoke else "mirror"
    runs = {"mnist-cnn": (lessons["mnist-cnn"].model_copy(update={"recipe": args.recipe}), "mnist",
                          1 if args.smoke else None),
            "cifar-resnet": (lessons["cifar-resnet"], "cifar", 1 if args.smoke else args.cifar_epochs)}
    report = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu (smoke test, not a measurement)",
              "torch": torch.__version__, "smoke": args.smoke, "lessons": {}}
    with tempfile.TemporaryDirectory(prefix="lessonflow-gpu-") as tmp:
        work = Path(tmp)
        data = {dataset: prepared(dataset, source, work) for dataset in ("mnist", "cifar")}
        for lesson_id, (lesson, dataset, epochs) in runs.items():
            result = measure(lesson_id, lesson, data[dataset], device, work, epochs, args.compile)
            report["lessons"][lesson_id] = result
            print(f"{lesson_id}: {result['test_accuracy']:.4f} test accuracy after {result['epochs']} epochs, "
                  f"{result['train_seconds']} s of training on {report['device']}", flush=True)
        fast = report["lessons"]["cifar-fast"] = measure_fast(lessons["cifar-fast"], data["cifar"], device, work,
                                                               1 if args.smoke else None)
        print(f"cifar-fast: {fast['test_accuracy']:.4f} test accuracy after {fast['epochs']} epochs, "
              f"{fast['train_seconds']} s of training on {report['device']}", flush=True)
    cifar = report["lessons"]["cifar-resnet"]
    report["airbench"] = AIRBENCH
    print(f"cifar-resnet: {cifar['test_accuracy'] * 100:.1f} % in {cifar['train_seconds']} s; airbench reference: "
          f"{AIRBENCH['test_accuracy'] * 100:.0f} % in {AIRBENCH['seconds']} s on an {AIRBENCH['gpu']} "
          f"(x{cifar['train_seconds'] / AIRBENCH['seconds']:.1f} the time, "
          f"{(AIRBENCH['test_accuracy'] - cifar['test_accuracy']) * 100:+.1f} points short)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "gpu-smoke.json" if args.smoke else "gpu.json"
    (RESULTS / name).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
