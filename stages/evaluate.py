"""``evaluate@<lesson>``: the lesson's kind scores what training saved; this stage loads it and writes the results.

The eval log (``results/<id>/eval/``) holds the kind's metrics, its pictures (``plots/``) and the
arrays it keeps (``outputs/``: a classifier's probabilities, which the ensembles read).
"""

import json

import numpy as np
import torch
from matplotlib import pyplot as plt

from lessonflow.contract import CHECKPOINT_SUFFIX, Saved
from lessonflow.datasets import load_prepared
from lessonflow.kinds import kind_of
from lessonflow.records import live_log, outputs_of, read_summary
from lessonflow.runtime import pick_device
from stages import stage_main

def saved_states(folder):
    """Every state the train stage saved in the lesson's model folder, by file stem (checkpoints aside)."""
    found = {path.stem: torch.load(path, weights_only=True) for path in sorted(folder.glob("*.pt"))
             if not path.name.endswith(CHECKPOINT_SUFFIX)}
    if "model" not in found:
        raise FileNotFoundError(f"{folder / 'model.pt'} missing: run the stage that writes it first (dvc repro)")
    return found


def evaluate(lesson_id, params, layout):
    """Score one trained lesson on the held-out test split and write its metrics and plots."""
    lesson = params.lessons[lesson_id]
    device = pick_device(params.device)
    data = load_prepared(layout.prepared(lesson.dataset))
    saved = Saved(saved_states(layout.model(lesson_id).parent), read_summary(layout.train_log(lesson_id)))
    result = kind_of(lesson.kind).evaluate(lesson.for_source(data["source"]), name=lesson_id, data=data,
                                           device=device, saved=saved)
    with live_log(layout.eval_log(lesson_id)) as live:
        live.summary.update(result.metrics)
        for file_name, arrays in result.arrays.items():
            with (outputs_of(live) / file_name).open("wb") as fh:
                np.savez_compressed(fh, **arrays)
        for file_name, figure in result.images.items():
            live.log_image(file_name, figure)
            plt.close(figure)
    print(f"evaluate@{lesson_id}: {json.dumps(result.metrics)}")
    return result.metrics


if __name__ == "__main__":
    stage_main("evaluate", "lessons", evaluate)
