"""``train@<lesson>``: the lesson's kind trains; this stage seeds, loads, saves and logs, alike for every kind.

It resumes from the lesson's checkpoint when the params, prepared data and code that made it are
the same (``fingerprint``), saves each state the kind returns under ``models/<id>/`` and writes the
train log (``results/<id>/train/``): the run facts every lesson has, the kind's numbers and curves.
"""

import hashlib
import json
from pathlib import Path

import torch

from lessonflow.atomic import atomic_path
from lessonflow.contract import BACKBONE, CHECKPOINT_SUFFIX, Checkpoint
from lessonflow.datasets import load_prepared
from lessonflow.kinds import kind_of
from lessonflow.records import live_log, log_curves, run_facts, trained_with
from lessonflow.runtime import make_deterministic, pick_device
from lessonflow.schema import LessonBase
from stages import stage_main

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "lessonflow"


def fingerprint(lesson: LessonBase, *inputs: Path) -> str:
    """Identifies the params, input files, code and torch version a checkpoint was made with."""
    digest = hashlib.sha256(json.dumps(lesson.model_dump(), sort_keys=True).encode())
    digest.update(torch.__version__.encode())
    for path in [*inputs, *sorted(PACKAGE_DIR.rglob("*.py"))]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def backbone_file(lesson_id, lesson, layout) -> Path | None:
    """The saved model of the lesson a transfer lesson builds on (its ``backbone:``), which must exist."""
    upstream = getattr(lesson, BACKBONE, None)
    if upstream is None:
        return None
    path = layout.model(upstream)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the backbone of lessons.{lesson_id} is missing; "
                                f"run `dvc repro train@{upstream}` first")
    return path


def train(lesson_id, params, layout):
    """Train one lesson's model (resuming from its checkpoint when params, data and code are unchanged)."""
    lesson = params.lessons[lesson_id]
    device = pick_device(params.device)
    make_deterministic(lesson.seed)
    prepared = layout.prepared(lesson.dataset)
    data = load_prepared(prepared)
    inputs = [prepared]
    if (backbone := backbone_file(lesson_id, lesson, layout)) is not None:
        data[BACKBONE] = torch.load(backbone, weights_only=True)
        inputs.append(backbone)
    checkpoint = Checkpoint(layout.checkpoint(lesson_id), fingerprint(lesson, *inputs), lesson_id)
    trained = kind_of(lesson.kind).train(lesson.for_source(data["source"]), name=lesson_id, data=data,
                                         device=device, checkpoint=checkpoint)
    for stem, state in trained.states.items():
        with atomic_path(layout.model(lesson_id).with_name(f"{stem}.pt")) as tmp:
            torch.save(state, tmp)
    for finished in layout.model(lesson_id).parent.glob(f"*{CHECKPOINT_SUFFIX}"):  # the GAN's judge has its own
        finished.unlink()  # a finished training leaves nothing to resume, and models/<id>/ only its weights
    with live_log(layout.train_log(lesson_id)) as live:
        log_curves(live, trained.history, trained.curves)
        live.summary.update(**run_facts(trained.seconds, trained.device, data["source"], lesson.seed),
                            **trained_with(trained.device, layout.model(lesson_id), trained.network),
                            **trained.summary)


if __name__ == "__main__":
    stage_main("train", "lessons", train)
