"""``evaluate@<lesson>``: the lesson's kind scores what training saved; this stage loads it and writes the results.

The eval log (``results/<id>/eval/``) holds the kind's metrics, its pictures (``plots/``) and the
arrays it keeps (``outputs/``: a classifier's probabilities, which the ensembles read), all of the
first seed, so a lesson's files read the same whatever its seeds; with several seeds it adds each
seed's headline value, their mean, spread and interval (``over_seeds``), and the same for the metrics
the kind weighs against the headline (``over_seeds.beside``).
"""

import json

import numpy as np
import torch
from matplotlib import pyplot as plt

from lessonflow.compare import headline
from lessonflow.contract import CHECKPOINT_SUFFIX, Evaluated, Saved
from lessonflow.datasets import load_prepared
from lessonflow.kinds import kind_of
from lessonflow.records import live_log, outputs_of, read_summary
from lessonflow.runtime import pick_device
from lessonflow.schema import LessonBase
from lessonflow.seeds import BESIDE, KEY, spread
from stages import stage_main

def saved_states(folder):
    """Every state the train stage saved in the lesson's model folder, by file stem (checkpoints aside)."""
    found = {path.stem: torch.load(path, weights_only=True) for path in sorted(folder.glob("*.pt"))
             if not path.name.endswith(CHECKPOINT_SUFFIX)}
    if "model" not in found:
        raise FileNotFoundError(f"{folder / 'model.pt'} missing: run the stage that writes it first (dvc repro)")
    return found


def evaluate(lesson_id, params, layout):
    """Score one trained lesson on the held-out test split and write its metrics and plots; with several seeds,
    each seed's model is scored too and the metrics add each seed's headline value and their spread."""
    lesson = params.lessons[lesson_id]
    device = pick_device(params.device)
    data = load_prepared(layout.prepared(lesson.dataset))
    trained = read_summary(layout.train_log(lesson_id))
    seeds = lesson.seed_list
    scored = {seed: score(lesson, seed, lesson_id, data, device, layout.seed_folder(lesson_id, seed, seeds[0]),
                          {**trained, **trained.get(KEY, {}).get("runs", {}).get(str(seed), {})})
              for seed in seeds}
    result = scored[seeds[0]]
    if len(seeds) > 1:
        def over(metric):
            return spread(metric, {seed: other.metrics[metric] for seed, other in scored.items()}, lesson.confidence)

        result.metrics[KEY] = over(headline(result.metrics)[0])
        if result.spread_also:
            result.metrics[KEY][BESIDE] = {metric: over(metric) for metric in result.spread_also}
    with live_log(layout.eval_log(lesson_id)) as live:
        live.summary.update(result.metrics)
        for file_name, arrays in result.arrays.items():
            with (outputs_of(live) / file_name).open("wb") as fh:
                np.savez_compressed(fh, **arrays)
        for file_name, figure in result.images.items():
            live.log_image(file_name, figure)
    for other in scored.values():
        for figure in other.images.values():
            plt.close(figure)
    print(f"evaluate@{lesson_id}: {json.dumps(result.metrics)}")
    return result.metrics


def score(lesson: LessonBase, seed: int, lesson_id: str, data, device, folder, trained: dict) -> Evaluated:
    """One seed's model scored by its kind, with that seed's own train facts (the caller keeps the first's files)."""
    seeded = lesson.model_copy(update={"seed": seed})
    return kind_of(lesson.kind).evaluate(seeded.for_source(data["source"]), name=lesson_id, data=data,
                                         device=device, saved=Saved(saved_states(folder), trained))


if __name__ == "__main__":
    stage_main("evaluate", "lessons", evaluate)
