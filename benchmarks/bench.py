"""`make bench`: lessonflow's training loop against the tutorials' own loops, on the real MNIST.

Each section writes ``benchmarks/results/<section>.json`` and a table (also in ``tables.md``):
``epoch`` (seconds per epoch, both loops in one run), ``fast`` (time to the tutorial's accuracy
with ``recipe: fast``), ``reproduction`` (the whole ``mnist-ann`` run), ``pipeline`` and
``overhead`` (``dvc repro`` against DVC's own floor), ``memory`` (peak RSS per lesson).
Data: the offline mirror (``LESSONFLOW_DATA_MIRROR``), prepared by lessonflow's own stages.
Usage: python benchmarks/bench.py [--only epoch fast ...] [--lessons mnist-ann ...] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402

import overhead  # noqa: E402
from overhead import summary  # noqa: E402
import tutorial  # noqa: E402
from lessonflow.contract import Checkpoint  # noqa: E402
from lessonflow.datasets import download_dataset, load_prepared, prepare_dataset  # noqa: E402
from lessonflow.kinds.classifier import train_config  # noqa: E402
from lessonflow.params import DatasetParams, load_params  # noqa: E402
from lessonflow.runtime import make_deterministic  # noqa: E402
from lessonflow.training import (  # noqa: E402
    epoch_batches, eval_batch_size, score, to_inputs, train_classifier,
)
from lessonflow.zoo import build_model  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
# (steps timed per run, runs) for section 1: the fully connected lessons, where the tutorial's
# data handling dominates, get more steps; the compute-bound ones fewer
EPOCH_PLAN = {"mnist-logreg": (100, 2), "mnist-ann": (100, 2), "mnist-mlp": (100, 2), "mnist-cnn": (40, 2),
              "mnist-cnn-book": (100, 2), "mnist-inception": (16, 2), "mnist-resnet": (40, 2),
              "mnist-lstm": (20, 2), "mnist-bilstm": (12, 2)}
MEMORY_STEPS = 10  # section 5: the peak comes with the data, the model and the evaluation batch, not with steps
MNIST_LESSONS = list(EPOCH_PLAN)
TRAIN_IMAGES = 60_000
STAGE, STAGE_RUNS = "evaluate@mnist-logreg", 1  # section 4: one stage's cost, warm server against its own process
FAST_GOALS = {"mnist-logreg": (0.92, 3.0), "mnist-ann": (0.978, 5.0), "mnist-cnn": (0.99, 60.0)}
CPU = torch.device("cpu")


SECTIONS = ("epoch", "fast", "reproduction", "pipeline", "overhead", "memory")
PER_LESSON = ("epoch", "fast", "memory")  # saved as {"lessons": …}


def write(section: str, result) -> None:
    """Save one section as soon as it is done (a later section failing loses nothing), tables included."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"lessons": result} if section in PER_LESSON else result
    (RESULTS / f"{section}.json").write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    (RESULTS / "tables.md").write_text(markdown(saved()) + "\n")


def saved() -> dict:
    """Every section's last saved result: the tables keep the sections a partial run (``--only``) did not redo."""
    found = {}
    for section in SECTIONS:
        if (path := RESULTS / f"{section}.json").is_file():
            result = json.loads(path.read_text())
            found[section] = result["lessons"] if section in PER_LESSON else result
    return found


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__,
            "load_average_at_write": [round(v, 2) for v in os.getloadavg()]}


def prepared_mnist(work: Path) -> dict:
    raw, out = work / "raw", work / "mnist.pt"
    if not out.exists():
        params = DatasetParams(source="mirror")
        download_dataset("mnist", params, "full", raw)
        prepare_dataset("mnist", params, raw, out)
    return load_prepared(out)


def fresh_model(lesson, seed: int = 0) -> torch.nn.Module:
    make_deterministic(seed)
    return build_model(lesson.model.name, lesson.model.kwargs(), in_shape=(1, 28, 28), num_classes=10)


def run_lessonflow(lesson, data: dict, cfg, work: Path):
    model = fresh_model(lesson)
    checkpoint = work / "checkpoint.pt"
    checkpoint.unlink(missing_ok=True)
    history = train_classifier(model, data, cfg, device=CPU, checkpoint=Checkpoint(checkpoint, "bench", "bench"),
                               progress=False)
    return model, history


def isolated(function: str, env: dict[str, str] | None = None, **kwargs):
    """``function(**kwargs)`` of this module, run in a fresh interpreter; its result comes back as JSON.

    Section 5 needs it: a process's memory high-water mark is its own, so each lesson's peak is
    measured in a process that has done nothing else.
    """
    out = subprocess.run([sys.executable, __file__, "--child", function, json.dumps(kwargs)], capture_output=True,
                         text=True, check=True, env={**os.environ, **(env or {})}).stdout
    return json.loads(out.strip().splitlines()[-1])


def data_seconds(data: dict, cfg) -> float:
    """The data handling of one lessonflow epoch, timed alone: shuffle, index, uint8 -> float."""
    started = time.perf_counter()
    for index in epoch_batches(len(data["y_train"]), cfg.batch_size, cfg.seed, 0):
        to_inputs(data["x_train"][index], cfg.normalize)
        data["y_train"][index]
    return time.perf_counter() - started


def per_epoch(lesson, cadence: tuple[str, int], measured: dict[str, float], steps: int, passes: int,
              steps_per_epoch: int) -> dict[str, float]:
    """Scale a timed stretch of ``steps`` training steps to one epoch of the lesson.

    Data handling and compute grow with the steps. Test passes count as many as the loop makes
    in an epoch: one per ``every`` steps (``steps``/``tensor`` cadence), one per epoch
    (``epoch``, and lessonflow's validation), or one per training run shared by its epochs (``end``).
    """
    scale = steps_per_epoch / steps
    where, every = cadence
    if where in ("steps", "tensor") and steps < every:
        raise ValueError(f"{steps} steps hold none of the test passes made every {every} steps: time at least {every}")
    per_pass = measured["evaluation"] / passes if passes else 0.0
    if where in ("steps", "tensor"):
        passes_per_epoch = steps_per_epoch // every
    elif where == "end":
        passes_per_epoch = 1 / lesson.epochs
    else:
        passes_per_epoch = 1
    evaluation = per_pass * passes_per_epoch
    result = {"data": measured["data"] * scale, "compute": measured["compute"] * scale, "evaluation": evaluation}
    result["total"] = sum(result.values())
    return result


def warm_up(lesson, cfg, x: torch.Tensor, y: torch.Tensor) -> None:
    """A few steps and test-sized forward passes of a throw-away model before any timing.

    The first calls of a shape build kernels and caches that every later model of that shape
    reuses; a stretch of a few dozen steps scaled to an epoch would count that one-off cost
    many times over, against whichever loop happened to run first.
    """
    model = fresh_model(lesson, seed=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    for batch in (x[:cfg.batch_size], x[cfg.batch_size:2 * cfg.batch_size], x[2 * cfg.batch_size:3 * cfg.batch_size]):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(to_inputs(batch, cfg.normalize)), y[:len(batch)]).backward()
        optimizer.step()
    score(model, x[:10_000], y[:10_000], cfg.normalize, CPU)
    with torch.no_grad():
        model(to_inputs(x[:cfg.batch_size], cfg.normalize))


def section_epoch(prepared: dict, lessons: dict, work: Path, tv_root: Path, repeats: int | None,
                  chosen: list[str]) -> dict:
    # both loops draw from the same images: all 60 000 for training, the test set as the evaluation set
    x_all = torch.cat([prepared["x_train"], prepared["x_val"]])
    y_all = torch.cat([prepared["y_train"], prepared["y_val"]])
    table = {}
    for lesson_id in chosen:
        lesson = lessons[lesson_id]
        steps, runs = EPOCH_PLAN[lesson_id]
        runs = repeats or runs
        cfg = train_config(lesson)
        cfg = type(cfg)(**{**cfg.__dict__, "epochs": 1})
        steps_per_epoch = -(-TRAIN_IMAGES // cfg.batch_size)
        ours = {"data": [], "compute": [], "evaluation": [], "total": []}
        theirs = {"data": [], "compute": [], "evaluation": [], "total": []}
        accuracy = {"lessonflow": [], "tutorial": []}
        warm_up(lesson, cfg, x_all, y_all)
        for run in range(runs):
            # lessonflow's epoch over `steps` batches drawn from all 60 000 images; its once-per-epoch
            # validation is timed apart, as a pass over the 10 000 test images (inside the timed
            # epoch it sees one batch, so the derived compute time does not carry its noise × scale)
            rows = torch.randperm(len(y_all), generator=torch.Generator().manual_seed(run))[:steps * cfg.batch_size]
            data = {"x_train": x_all[rows], "y_train": y_all[rows], "x_val": prepared["x_test"][:cfg.batch_size],
                    "y_val": prepared["y_test"][:cfg.batch_size]}
            model, history = run_lessonflow(lesson, data, cfg, work)
            eval_started = time.perf_counter()
            _, acc = score(model, prepared["x_test"], prepared["y_test"], cfg.normalize, CPU)
            evaluation = time.perf_counter() - eval_started
            handling = data_seconds(data, cfg)
            seconds = history.epochs[0]["seconds"]
            measured = {"data": handling, "compute": seconds - handling, "evaluation": evaluation}
            for key, value in per_epoch(lesson, ("epoch", 0), measured, steps, 1, steps_per_epoch).items():
                ours[key].append(value)
            accuracy["lessonflow"].append(acc)
            split, acc = tutorial.train(lesson_id, fresh_model(lesson), cfg, tv_root, steps)
            measured = {"data": split.data, "compute": split.compute, "evaluation": split.evaluation}
            for key, value in per_epoch(lesson, tutorial.EVAL_CADENCE[lesson_id], measured, split.steps,
                                        split.passes, steps_per_epoch).items():
                theirs[key].append(value)
            accuracy["tutorial"].append(acc)
        row = {"steps_per_run": steps, "steps_per_epoch": steps_per_epoch, "runs": runs,
               "lessonflow": {k: summary(v) for k, v in ours.items()},
               "tutorial": {k: summary(v) for k, v in theirs.items()},
               "accuracy": {k: summary(v) for k, v in accuracy.items()}}
        row["speedup"] = round(row["tutorial"]["total"]["median"] / row["lessonflow"]["total"]["median"], 2)
        table[lesson_id] = row
        write("epoch", table)  # a long run keeps every finished lesson
        print(f"{lesson_id}: lessonflow {row['lessonflow']['total']['median']} s/epoch, "
              f"tutorial {row['tutorial']['total']['median']} s/epoch, x{row['speedup']}", flush=True)
    return table


def section_fast(prepared: dict, lessons: dict, work: Path, repeats: int | None, chosen: list[str]) -> dict:
    table = {}
    for lesson_id, (goal_accuracy, goal_seconds) in FAST_GOALS.items():
        if lesson_id not in chosen:
            continue
        lesson = lessons[lesson_id].model_copy(update={"recipe": "fast"})
        cfg = train_config(lesson)
        runs = repeats or (1 if goal_seconds > 10 else 3)
        seconds, accuracies = [], []
        for _ in range(runs):
            model, history = run_lessonflow(lesson, prepared, cfg, work)
            seconds.append(history.train_seconds)
            accuracies.append(score(model, prepared["x_test"], prepared["y_test"], cfg.normalize, CPU)[1])
        table[lesson_id] = {
            "recipe": {"optimizer": cfg.optimizer, "lr": cfg.lr, "momentum": cfg.momentum,
                       "weight_decay": cfg.weight_decay, "schedule": cfg.schedule, "epochs": cfg.epochs,
                       "batch_size": cfg.batch_size},
            "goal": {"test_accuracy": goal_accuracy, "train_seconds": goal_seconds},
            "train_seconds": summary(seconds), "test_accuracy": summary(accuracies),
            "met": statistics.median(accuracies) >= goal_accuracy and statistics.median(seconds) <= goal_seconds}
        print(f"{lesson_id} fast: {table[lesson_id]['test_accuracy']['median']:.4f} in "
              f"{table[lesson_id]['train_seconds']['median']} s (goal {goal_accuracy} in {goal_seconds} s)", flush=True)
    return table


def section_reproduction(prepared: dict, lessons: dict, work: Path, epoch_table: dict | None,
                         epochs: int) -> dict:
    lesson = lessons["mnist-ann"]
    cfg = train_config(lesson)
    cfg = type(cfg)(**{**cfg.__dict__, "epochs": epochs})
    started = time.perf_counter()
    model, history = run_lessonflow(lesson, prepared, cfg, work)
    wall = time.perf_counter() - started
    accuracy = score(model, prepared["x_test"], prepared["y_test"], cfg.normalize, CPU)[1]
    result = {"epochs": epochs, "lessonflow": {"train_seconds": round(history.train_seconds, 2),
                                               "wall_seconds": round(wall, 2), "test_accuracy": round(accuracy, 4)}}
    if epoch_table and "mnist-ann" in epoch_table:
        row = epoch_table["mnist-ann"]
        per_epoch = row["tutorial"]["total"]["median"]
        result["tutorial_extrapolated"] = {"seconds_per_epoch": per_epoch, "runs": row["runs"],
                                           "steps_per_run": row["steps_per_run"],
                                           "seconds_for_100_epochs": round(per_epoch * 100, 1)}
        result["speedup_extrapolated"] = round(per_epoch * 100 / (wall * 100 / epochs), 2)
    print(f"mnist-ann reproduction: {epochs} epochs in {wall:.1f} s, test {accuracy:.4f}", flush=True)
    return result


def section_pipeline(noop_runs: int) -> dict:
    from conftest import copy_project, dvc, project_env

    from lessonflow import warm

    with tempfile.TemporaryDirectory(prefix="lessonflow-bench-") as tmp:
        repo = copy_project(Path(tmp))
        warm.stop()  # the build pays for starting the warm server, as a user's first `make run` does
        started = time.perf_counter()
        dvc(repo, "repro")
        wall = time.perf_counter() - started
        trained = overhead.train_seconds(repo)
        noop = []
        for _ in range(noop_runs):
            started = time.perf_counter()
            dvc(repo, "repro")
            noop.append(time.perf_counter() - started)
        # one stage forced, in the warm server against a process of its own (LESSONFLOW_WARM=off), alternating
        one_stage = {"warm": [], "own process": []}
        for _ in range(STAGE_RUNS):
            for label, switch in (("warm", "on"), ("own process", "off")):
                started = time.perf_counter()
                dvc(repo, "repro", "--force", "--single-item", STAGE, env=project_env(LESSONFLOW_WARM=switch))
                one_stage[label].append(time.perf_counter() - started)
    inside = sum(trained.values())
    result = {"default_profile_repro_wall_seconds": round(wall, 1), "sum_train_seconds": round(inside, 1),
              "share_outside_training": round(1 - inside / wall, 3), "lessons_with_train_seconds": len(trained),
              "noop_repro_seconds": summary(noop), "one_stage": STAGE,
              "one_stage_seconds": {label: summary(values) for label, values in one_stage.items()}}
    print(f"dvc repro (default profile): {wall:.1f} s, of which training {inside:.1f} s; "
          f"no-op repro median {result['noop_repro_seconds']['median']} s; {STAGE}: "
          + ", ".join(f"{label} {values['median']} s" for label, values in result["one_stage_seconds"].items()),
          flush=True)
    return result


def peak_memory(lesson_id: str, prepared: str, work: str) -> float:
    """Section 5's measurement (in a child, see ``isolated``): MEMORY_STEPS steps and one evaluation pass, then
    the process's own high-water mark in MiB (VmHWM; not ru_maxrss, which Linux keeps across exec, so a
    child of this large benchmark process would report the parent's peak)."""
    import re

    lesson = load_params(ROOT / "params.yaml").lessons[lesson_id]
    data, cfg = load_prepared(Path(prepared)), train_config(lesson)
    cfg = type(cfg)(**{**cfg.__dict__, "epochs": 1})
    rows, chunk = MEMORY_STEPS * cfg.batch_size, eval_batch_size(CPU)  # one evaluation chunk sets that peak
    run_lessonflow(lesson, {**data, "x_train": data["x_train"][:rows], "y_train": data["y_train"][:rows],
                            "x_val": data["x_val"][:chunk], "y_val": data["y_val"][:chunk]}, cfg, Path(work))
    return int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024


def section_memory(work: Path, chosen: list[str]) -> dict:
    """Two children at a time, one torch thread each: a peak of memory does not depend on the speed."""
    from concurrent.futures import ThreadPoolExecutor

    def peak(lesson_id: str) -> float:
        folder = work / f"memory-{lesson_id}"
        folder.mkdir(exist_ok=True)
        return isolated("peak_memory", env={"LESSONFLOW_THREADS": "1"}, lesson_id=lesson_id,
                        prepared=str(work / "mnist.pt"), work=str(folder))

    with ThreadPoolExecutor(max_workers=2) as pool:
        peaks = dict(zip(chosen, pool.map(peak, chosen)))
    table = {}
    for lesson_id, peak_mib in peaks.items():
        table[lesson_id] = {"peak_rss_mib": round(peak_mib, 1), "under_2_gb": peak_mib < 2048}
        print(f"{lesson_id}: peak RSS {peak_mib:.0f} MiB (training and evaluating on full MNIST)", flush=True)
    return table


def markdown(results: dict) -> str:
    lines = []
    if "epoch" in results:
        lines += ["### Seconds per epoch on real MNIST (drawn from 60 000 training images; evaluation on the 10 000 test images)",
                  "", "Each run times the first *steps* of an epoch and scales them to the whole epoch "
                  "(`per_epoch` in `benchmarks/bench.py`); accuracy is after those steps.", "",
                  "| lesson | runs × steps (of an epoch) | loop | data | compute | evaluation | total (median) | spread | test acc. | tutorial ÷ lessonflow |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for lesson_id, row in results["epoch"].items():
            for loop in ("tutorial", "lessonflow"):
                t = row[loop]
                lines.append(f"| {lesson_id} | {row['runs']} × {row['steps_per_run']} (of {row['steps_per_epoch']}) | {loop} | {t['data']['median']} | "
                             f"{t['compute']['median']} | {t['evaluation']['median']} | {t['total']['median']} | "
                             f"{t['total']['spread']} | {row['accuracy'][loop]['median']:.4f} | "
                             f"{row['speedup'] if loop == 'lessonflow' else ''} |")
        lines.append("")
    if "fast" in results:
        lines += ["### Time to the tutorial's accuracy, `recipe: fast` (54 000 training images, test accuracy)", "",
                  "| lesson | recipe | runs | train s (median, spread) | test acc. (median, spread) | goal | met |",
                  "|---|---|---|---|---|---|---|"]
        for lesson_id, row in results["fast"].items():
            r = row["recipe"]
            recipe = (f"{r['optimizer']} lr {r['lr']} mom {r['momentum']} wd {r['weight_decay']}, {r['schedule']}, "
                      f"{r['epochs']} ep × batch {r['batch_size']}")
            lines.append(f"| {lesson_id} | {recipe} | {len(row['train_seconds']['runs'])} | "
                         f"{row['train_seconds']['median']} ({row['train_seconds']['spread']}) | "
                         f"{row['test_accuracy']['median']:.4f} ({row['test_accuracy']['spread']:.4f}) | "
                         f"≥ {row['goal']['test_accuracy']} in ≤ {row['goal']['train_seconds']} s | "
                         f"{'yes' if row['met'] else 'no'} |")
        lines.append("")
    if "reproduction" in results:
        r = results["reproduction"]
        lines += ["### mnist-ann reproduction end to end", "", "| loop | epochs | seconds | test acc. |", "|---|---|---|---|",
                  f"| lessonflow (measured, wall) | {r['epochs']} | {r['lessonflow']['wall_seconds']} | "
                  f"{r['lessonflow']['test_accuracy']} |"]
        if "tutorial_extrapolated" in r:
            t = r["tutorial_extrapolated"]
            lines.append(f"| tutorial (EXTRAPOLATED: section 1's {t['runs']} runs of {t['steps_per_run']} steps, "
                         f"{t['seconds_per_epoch']} s per epoch, × 100) | 100 | "
                         f"{t['seconds_for_100_epochs']} | — |")
            lines.append(f"\nSpeed-up (extrapolated tutorial ÷ lessonflow, per 100 epochs): ×{r['speedup_extrapolated']}")
        lines.append("")
    if "pipeline" in results:
        p = results["pipeline"]
        lines += ["### Pipeline overhead (temporary copy of the project, default profile)", "",
                  "| measure | value |", "|---|---|",
                  f"| `dvc repro`, everything to build (wall) | {p['default_profile_repro_wall_seconds']} s |",
                  f"| sum of `train_seconds` ({p['lessons_with_train_seconds']} lessons) | {p['sum_train_seconds']} s |",
                  f"| share of the wall time outside training | {p['share_outside_training'] * 100:.1f} % |",
                  f"| `dvc repro` with nothing to do (median, spread of {len(p['noop_repro_seconds']['runs'])}) | "
                  f"{p['noop_repro_seconds']['median']} s ({p['noop_repro_seconds']['spread']}) |"]
        lines += [f"| `dvc repro --force --single-item {p['one_stage']}`, {label} (median, spread of {len(v['runs'])}) | "
                  f"{v['median']} s ({v['spread']}) |" for label, v in p.get("one_stage_seconds", {}).items()]
        lines.append("")
    if "overhead" in results:
        lines += overhead.markdown(results["overhead"])
    if "memory" in results:
        lines += [f"### Peak memory of training on full MNIST ({MEMORY_STEPS} steps + one evaluation pass, child process, VmHWM)", "",
                  "| lesson | peak RSS (MiB) | < 2 GB |", "|---|---|---|"]
        lines += [f"| {k} | {v['peak_rss_mib']} | {'yes' if v['under_2_gb'] else 'no'} |" for k, v in results["memory"].items()]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--lessons", nargs="+", choices=MNIST_LESSONS, default=MNIST_LESSONS)
    parser.add_argument("--repeats", type=int, help="runs per lesson in sections 1 and 2 (default: per lesson)")
    parser.add_argument("--reproduction-epochs", type=int, default=100)
    parser.add_argument("--noop-runs", type=int, default=2)
    parser.add_argument("--overhead-runs", type=int, default=5, help="no-op repro and status runs, project and floor")
    parser.add_argument("--edit-runs", type=int, default=3, help="one-param rebuilds, project and floor")
    parser.add_argument("--child", nargs=2, metavar=("FUNCTION", "JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # see `isolated`
        function, kwargs = args.child
        print(json.dumps(globals()[function](**json.loads(kwargs))))
        return
    os.environ.setdefault("LESSONFLOW_DATA_MIRROR", str(ROOT.parent / "shared" / "data"))
    lessons = load_params(ROOT / "params.yaml").lessons
    print(json.dumps(machine()), flush=True)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="lessonflow-bench-") as tmp:
        work = Path(tmp)
        if {"epoch", "fast", "reproduction", "memory"} & set(args.only):  # the sections on the real MNIST
            prepared = prepared_mnist(work)
        if "epoch" in args.only:
            tv_root = tutorial.torchvision_root(Path(os.environ["LESSONFLOW_DATA_MIRROR"]), work / "torchvision")
            results["epoch"] = section_epoch(prepared, lessons, work, tv_root, args.repeats, args.lessons)
            write("epoch", results["epoch"])
        if "fast" in args.only:
            results["fast"] = section_fast(prepared, lessons, work, args.repeats, args.lessons)
            write("fast", results["fast"])
        if "reproduction" in args.only:
            results["reproduction"] = section_reproduction(prepared, lessons, work, results.get("epoch"),
                                                           args.reproduction_epochs)
            write("reproduction", results["reproduction"])
        if "memory" in args.only:
            results["memory"] = section_memory(work, args.lessons)
            write("memory", results["memory"])
    if "pipeline" in args.only:
        results["pipeline"] = section_pipeline(args.noop_runs)
        write("pipeline", results["pipeline"])
    if "overhead" in args.only:
        results["overhead"] = overhead.section_overhead(args.overhead_runs, args.edit_runs)
        write("overhead", results["overhead"])
    print("\n" + markdown(results))


if __name__ == "__main__":
    main()
