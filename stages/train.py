"""``train@<lesson>``: the lesson's kind trains; this stage seeds, loads, saves and logs, alike for every kind.

It trains once per seed of the lesson (``seeds``), in turn or ``orchestration.seed_workers`` at a time
(``lessonflow/seed_workers.py``), in one stage: a stage per seed would repeat every dep in the lock.
Each seed resumes from its own checkpoint when the params, prepared data and code that made it are
the same (``fingerprint``); the first seed's states go under ``models/<id>/`` as one seed's always
did, the others' beside them. The train log (``results/<id>/train/``) holds the first seed's run
facts, the kind's numbers and curves, and with several seeds each one's run facts and their spread.
"""

import dataclasses
import functools
import hashlib
import json
import shutil
from pathlib import Path
from typing import NoReturn

import torch

from lessonflow.atomic import atomic_path
from lessonflow.contract import BACKBONE, CHECKPOINT_SUFFIX, Checkpoint, Trained
from lessonflow.datasets import load_prepared
from lessonflow.kinds import kind_of
from lessonflow.paths import SEED_FOLDER
from lessonflow.records import live_log, log_curves, run_facts, trained_with
from lessonflow.runtime import make_deterministic, pick_device
from lessonflow.schema import LessonBase
from lessonflow.seed_workers import SeedFailed, side_by_side
from lessonflow.seeds import KEY, spread
from stages import USER_ERRORS, stage_main

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "lessonflow"


def fingerprint(lesson: LessonBase, *inputs: Path) -> str:
    """Identifies the params, input files, code and torch version a checkpoint was made with."""
    digest = hashlib.sha256(json.dumps(lesson.model_dump(), sort_keys=True).encode())
    digest.update(torch.__version__.encode())
    for path in [*inputs, *sorted(PACKAGE_DIR.rglob("*.py"))]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def backbone_file(lesson_id, lesson, layout) -> Path | None:
    """The file a transfer lesson freezes, which must exist: the saved model of the lesson it builds on
    (its ``backbone:``), or on the full profile the ImageNet weights its dataset's download fetched."""
    upstream, weights = getattr(lesson, BACKBONE, None), getattr(lesson, "weights_file", None)
    if upstream is None and weights is None:
        return None
    path = layout.model(upstream) if upstream else layout.raw(lesson.dataset) / weights
    if not path.is_file():
        stage = f"train@{upstream}" if upstream else f"download@{lesson.dataset}"
        raise FileNotFoundError(f"{path}: the backbone of lessons.{lesson_id} is missing; run `dvc repro {stage}` first")
    return path


def train(lesson_id, params, layout):
    """Train one lesson's model once per seed (each resuming from its checkpoint when params, data and code are unchanged)."""
    lesson = params.lessons[lesson_id]
    device = pick_device(params.device)
    seeds = lesson.seed_list
    make_deterministic(seeds[0])
    inputs = [layout.prepared(lesson.dataset), *filter(None, [backbone_file(lesson_id, lesson, layout)])]
    folders = {seed: layout.seed_folder(lesson_id, seed, seeds[0]) for seed in seeds}
    workers = min(params.orchestration.seed_workers, len(seeds))
    try:
        done = (side_by_side(functools.partial(train_in_worker, lesson, lesson_id, inputs, folders), seeds, workers, device)
                if workers > 1 else in_turn(lesson, lesson_id, inputs, folders, device))
    except SeedFailed as failed:
        fail_naming(failed, lesson_id)
    runs, source = {seed: run for seed, (run, _) in done.items()}, done[seeds[0]][1]
    folder = layout.model(lesson_id).parent
    for finished in folder.rglob(f"*{CHECKPOINT_SUFFIX}"):  # kept until every seed is saved: a rerun resumes each
        finished.unlink()  # a finished training leaves nothing to resume, and models/<id>/ only its weights
    for stale in folder.glob(f"{SEED_FOLDER}*"):  # a seed no longer asked for
        if stale.name not in {f"{SEED_FOLDER}{seed}" for seed in seeds}:
            shutil.rmtree(stale)
    first = runs[seeds[0]]
    with live_log(layout.train_log(lesson_id)) as live:
        log_curves(live, first.history, first.curves)
        live.summary.update(**run_facts(first.seconds, first.device, source, seeds[0]),
                            **trained_with(first.device, layout.model(lesson_id), first.network), **first.summary)
        if len(seeds) > 1:
            live.summary[KEY] = {**spread("train_seconds", {seed: run.seconds for seed, run in runs.items()}, None),
                                 "runs": {str(seed): {**run_facts(run.seconds, run.device, source, seed),
                                                      **run.summary} for seed, run in runs.items()}}


def load_inputs(prepared: Path, backbone: Path | None = None):
    """The prepared data, with the saved model of the lesson it builds on (a checkpoint made on another is not resumed)."""
    data = load_prepared(prepared)
    if backbone is not None:
        data[BACKBONE] = torch.load(backbone, weights_only=True)
    return data


def in_turn(lesson: LessonBase, lesson_id: str, inputs: list[Path], folders: dict[int, Path],
            device) -> dict[int, tuple[Trained, str]]:
    """The seeds one after the other in this process, on data loaded once; with several, a failure names its seed."""
    data = load_inputs(*inputs)
    runs = {}
    for seed in folders:
        if runs:
            make_deterministic(seed)
        try:
            runs[seed] = train_seed(lesson.model_copy(update={"seed": seed}), lesson_id, data, inputs, device,
                                    folders[seed]), data["source"]
        except Exception as error:
            if len(folders) == 1:
                raise
            raise SeedFailed(seed, error) from error
    return runs


def train_in_worker(lesson: LessonBase, lesson_id: str, inputs: list[Path], folders: dict[int, Path], seed: int,
                    device) -> tuple[Trained, str]:
    """One seed in a worker process (``lessonflow/seed_workers.py``), seeded and fed as the serial loop would be;
    its training facts and its data's source come back, its states are saved already."""
    make_deterministic(seed)
    data = worker_inputs(*inputs)
    trained = train_seed(lesson.model_copy(update={"seed": seed}), lesson_id, data, inputs, device, folders[seed])
    return dataclasses.replace(trained, states={}), data["source"]


@functools.lru_cache(maxsize=1)
def worker_inputs(*inputs: Path):
    """A worker that trains several seeds loads the data once, as the serial loop does."""
    return load_inputs(*inputs)


def fail_naming(failed: SeedFailed, lesson_id: str) -> NoReturn:
    """The stage fails naming the seed: a user's error in one line, a bug with its traceback (a worker's too)."""
    if isinstance(failed.error, USER_ERRORS):
        raise RuntimeError(f"{failed.error} (seed {failed.seed})") from failed.error
    failed.error.add_note(f"while training seed {failed.seed} of lessons.{lesson_id}\n{failed.details}".rstrip())
    raise failed.error from None


def train_seed(lesson: LessonBase, lesson_id: str, data, inputs: list[Path], device, folder: Path) -> Trained:
    """One seed's training, its states saved in ``folder`` and its checkpoint left there."""
    checkpoint = Checkpoint(folder / CHECKPOINT_SUFFIX, fingerprint(lesson, *inputs), lesson_id)
    trained = kind_of(lesson.kind).train(lesson.for_source(data["source"]), name=lesson_id, data=data,
                                         device=device, checkpoint=checkpoint)
    folder.mkdir(parents=True, exist_ok=True)
    for stem, state in trained.states.items():
        with atomic_path(folder / f"{stem}.pt") as tmp:
            torch.save(state, tmp)
    return trained


if __name__ == "__main__":
    stage_main("train", "lessons", train)
