"""Seeds as a params axis: each seed's model and value, their spread, verdicts and comparisons that know it.

One lesson trains three seeds on a slice of the embedded digits through the real train and evaluate
stages; the verdict and the card are checked on constructed per-seed values; `lessonflow compare`
runs on real builds in a temporary git repo, once after a change of seeds alone and once after a
real param edit.
"""

from __future__ import annotations

import statistics

import pytest
import yaml
from conftest import BIN, commit_all, dvc, read_json, run
from test_advanced_mnist import one_epoch_params, tiny_digits  # noqa: F401 (a fixture)

from lessonflow.cards import card_fields, render_card
from lessonflow.compare import verdict
from lessonflow.errors import ParamsError
from lessonflow.paths import Layout
from lessonflow.seeds import significance, spread
from stages.evaluate import evaluate as evaluate_stage
from stages.train import train as train_stage

LESSON = "mnist-logreg"


def test_a_lesson_trained_with_three_seeds_writes_each_seed_and_their_spread(tiny_digits, tmp_path):  # noqa: F811
    params, layout = one_epoch_params(LESSON, seeds=3), Layout(tiny_digits)
    train_stage(LESSON, params, layout)
    metrics = evaluate_stage(LESSON, params, layout)
    folder = layout.model(LESSON).parent
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.pt")) == [
        "model.pt", "seed-1/model.pt", "seed-2/model.pt"]  # the first seed where one seed's model always was
    seeds = read_json(layout.eval_log(LESSON) / "metrics.json")["over_seeds"]
    values = [seeds["per_seed"][seed] for seed in ("0", "1", "2")]
    assert seeds["metric"] == "test_accuracy" and seeds["seeds"] == 3 and values[0] == metrics["test_accuracy"]
    assert len(set(values)) > 1, "each seed trains its own model"
    assert seeds["mean"] == pytest.approx(statistics.fmean(values), abs=1e-6)
    assert seeds["std"] == pytest.approx(statistics.stdev(values), abs=1e-6)
    assert (seeds["min"], seeds["max"]) == (min(values), max(values))
    interval = seeds["interval"]
    assert interval["confidence"] == 0.95 and interval["method"] == "student-t"
    assert interval["low"] < seeds["mean"] < interval["high"]
    timing = read_json(layout.train_log(LESSON) / "metrics.json")["over_seeds"]
    assert timing["metric"] == "train_seconds" and set(timing["per_seed"]) == {"0", "1", "2"}

    # the first seed's model and predictions are the ones a one-seed run writes, byte for byte
    alone = Layout(tmp_path / "alone")
    alone.prepared("mnist").parent.mkdir(parents=True)
    alone.prepared("mnist").write_bytes(layout.prepared("mnist").read_bytes())
    train_stage(LESSON, one_epoch_params(LESSON), alone)
    evaluate_stage(LESSON, one_epoch_params(LESSON), alone)
    assert alone.model(LESSON).read_bytes() == layout.model(LESSON).read_bytes()
    assert alone.predictions(LESSON).read_bytes() == layout.predictions(LESSON).read_bytes()

    # fewer seeds next time: the dropped seed's model goes
    train_stage(LESSON, one_epoch_params(LESSON, seeds=[0, 2]), layout)
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.pt")) == ["model.pt", "seed-2/model.pt"]


def test_the_verdict_turns_from_matches_to_inconclusive_when_the_seeds_spread_wider():
    reference = 0.978
    tight = spread("test_accuracy", {0: 0.978, 1: 0.979, 2: 0.9775}, 0.95)
    wide = spread("test_accuracy", {0: 0.978, 1: 0.988, 2: 0.970}, 0.95)
    assert verdict(("test_accuracy", 0.978), reference, "mirror", tight).startswith("matches (mean +0.0 pts, 95% interval")
    assert verdict(("test_accuracy", 0.978), reference, "mirror", wide).startswith("inconclusive (")
    high = spread("test_accuracy", {0: 0.990, 1: 0.991, 2: 0.989}, 0.95)
    low = spread("test_accuracy", {0: 0.960, 1: 0.961, 2: 0.959}, 0.95)
    assert verdict(("test_accuracy", 0.99), reference, "mirror", high).startswith("beats (")
    assert verdict(("test_accuracy", 0.96), reference, "embedded", low).startswith("falls short (")
    assert verdict(("test_accuracy", 0.96), reference, "embedded", low).endswith(", on sample data")
    assert verdict(("test_accuracy", 0.979), reference, "mirror") == "one seed: matches (+0.1 pts)"


def test_a_change_beyond_the_seed_spread_is_told_from_one_within_it():
    assert significance([0.978, 0.979, 0.9775], [0.9785, 0.977, 0.9790]).startswith("within the seed spread (Welch p=")
    assert significance([0.978, 0.979, 0.9775], [0.90, 0.905, 0.899]).startswith("beyond the seed spread (Welch p=")
    assert significance([0.978], [0.90]) == "one seed: spread unknown"


@pytest.mark.parametrize("entry, message", [
    ({"seeds": 0}, "lessons.mnist-logreg.seeds: a count of seeds is 1 or more (got 0)"),
    ({"seeds": [0, 1, 1]}, "lessons.mnist-logreg.seeds: seed 1 is listed twice"),
    ({"seeds": []}, "lessons.mnist-logreg.seeds: the list names no seed"),
    ({"seeds": 1, "interval": 0.95}, "lessons.mnist-logreg.interval: a 95% interval needs 2 seeds or more"),
    ({"seeds": [4], "interval": 0.9}, "lessons.mnist-logreg.interval: a 90% interval needs 2 seeds or more"),
])
def test_bad_seeds_are_refused_naming_the_key(entry, message):
    with pytest.raises(ParamsError) as raised:
        one_epoch_params(LESSON, **entry)
    assert message in str(raised.value)


def test_a_card_lists_each_seed_the_mean_and_spread_and_the_training_time_spread():
    from conftest import ROOT
    from lessonflow.params import load_params

    lesson = load_params(ROOT / "params.yaml", lessons=[LESSON]).lessons[LESSON]
    metrics = {"test_accuracy": 0.93, "data_source": "embedded", "seed": 0,
               "over_seeds": spread("test_accuracy", {0: 0.93, 1: 0.92, 2: 0.94}, 0.95)}
    trained = {"train_seconds": 1.5, "device": "cpu", "data_source": "embedded", "seed": 0,
               "over_seeds": spread("train_seconds", {0: 1.5, 1: 1.7, 2: 1.6}, None)}
    judged = verdict(("test_accuracy", 0.93), lesson.reference_accuracy, "embedded", metrics["over_seeds"])
    card = render_card(LESSON, card_fields(LESSON, lesson, metrics, trained, ("test_accuracy", 0.93), judged))
    assert ("**Result per seed:** test_accuracy: seed 0: 0.93, seed 1: 0.92, seed 2: 0.94; mean 0.93 ± 0.01 "
            "(standard deviation over 3 seeds; range 0.92 to 0.94; 95% t interval of the mean") in card
    assert ("**Training time:** seed 0: 1.5 s, seed 1: 1.7 s, seed 2: 1.6 s; mean 1.6 s ± 0.1 s "
            "(standard deviation over 3 seeds; range 1.5 s to 1.7 s), on cpu") in card
    assert "one seed" not in card


def test_a_transfer_card_gives_the_from_scratch_baseline_and_the_gain_over_seeds_too():
    from conftest import ROOT
    from lessonflow.params import load_params

    name = "catdog-vgg16"
    lesson = load_params(ROOT / "params.yaml", lessons=[name]).lessons[name]
    metrics = {"test_accuracy": 0.61, "data_source": "mirror", "seed": 0,
               "over_seeds": {**spread("test_accuracy", {0: 0.61, 1: 0.6}, 0.95),
                              "beside": {"scratch_test_accuracy": spread("scratch_test_accuracy", {0: 0.54, 1: 0.52}, 0.95),
                                         "transfer_gain": spread("transfer_gain", {0: 0.07, 1: 0.08}, 0.95)}}}
    trained = {"train_seconds": 1.5, "device": "cpu", "data_source": "mirror", "seed": 0}
    card = render_card(name, card_fields(name, lesson, metrics, trained, ("test_accuracy", 0.61), "falls short"))
    assert ("; scratch_test_accuracy: seed 0: 0.54, seed 1: 0.52; mean 0.53 ± 0.01414 (standard deviation over 2 "
            "seeds") in card
    assert "; transfer_gain: seed 0: 0.07, seed 1: 0.08; mean 0.075" in card


def set_lesson(repo, **values) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for key, value in values.items():
        target = params["lessons"][LESSON]
        *parents, leaf = key.split(".")
        for part in parents:
            target = target[part]
        target[leaf] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def compared(repo) -> str:
    shown = run(repo, str(BIN / "lessonflow"), "compare").stdout
    return next(line for line in shown.splitlines() if line.startswith(LESSON))


@pytest.mark.long  # three real builds of one lesson (about a minute)
def test_compare_tells_a_new_seed_set_within_the_spread_from_a_lower_learning_rate_beyond_it(project):
    set_lesson(project, seeds=3)
    dvc(project, "repro", f"evaluate@{LESSON}")
    commit_all(project, "three seeds")
    set_lesson(project, seeds=[3, 4, 5])
    dvc(project, "repro", f"evaluate@{LESSON}")
    assert "within the seed spread" in compared(project)
    set_lesson(project, seeds=3, **{"optimizer.lr": 0.0005})
    dvc(project, "repro", f"evaluate@{LESSON}")
    line = compared(project)
    assert "beyond the seed spread" in line and "(worse)" in line, line
