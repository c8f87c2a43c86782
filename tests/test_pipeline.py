"""End to end: real `dvc repro` of the default profile in a temporary git repo."""

from __future__ import annotations

import yaml

from lessonflow.records import CARRIED_FACTS, RUN_FACTS

from conftest import MNIST_LESSONS, clone, dvc, project_params, read_json, stages_ran


def test_default_profile_builds_every_mnist_lesson_offline(built_project):
    for lesson in MNIST_LESSONS:
        metrics = read_json(built_project / "results" / lesson / "eval" / "metrics.json")
        assert metrics["data_source"] == "embedded"
        assert metrics["device"] == "cpu"
        trained = read_json(built_project / "results" / lesson / "train" / "metrics.json")
        assert metrics["epochs"] > 0 and trained["train_seconds"] > 0
        assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["test_loss"] > 0
        assert "seed" in metrics and "reference_accuracy" in metrics


def test_every_lesson_of_every_kind_records_the_same_run_facts(built_project):
    """One set of names for how long, where, on which data and from which seed, whatever the kind; the
    evaluation repeats all but how long, which a retraining to the same weights changes without it."""
    for lesson, entry in project_params()["lessons"].items():
        logs = {log: read_json(built_project / "results" / lesson / log / "metrics.json") for log in ("train", "eval")}
        assert set(RUN_FACTS) <= set(logs["train"]), (lesson, sorted(logs["train"]))
        assert {key: logs["eval"][key] for key in CARRIED_FACTS} == {key: logs["train"][key] for key in CARRIED_FACTS}
        assert set(RUN_FACTS) - set(CARRIED_FACTS) == {"train_seconds"} and "train_seconds" not in logs["eval"], lesson
        facts = logs["train"]
        assert facts["seed"] == entry.get("seed", 0) and facts["device"] == "cpu" and facts["train_seconds"] >= 0, lesson


def test_no_lesson_leaves_a_declared_output_folder_empty(built_project):
    """DVC warns "'…' is empty" for every empty output folder it commits or records (issue 29):
    every kind keeps its curves and its arrays, so none is."""
    for lesson in project_params()["lessons"]:
        for folder in ("train/plots", "eval/outputs", "eval/plots"):
            path = built_project / "results" / lesson / folder
            assert any(p.is_file() for p in path.rglob("*")), f"{path.relative_to(built_project)} is empty"


def test_every_classifier_learns_the_embedded_digits(built_project):
    """What a newcomer sees first: no lesson of the default build reads as broken (issue: 33 % for mnist-mlp)."""
    lessons = project_params()["lessons"]
    classifiers = [key for key, lesson in lessons.items() if lesson["kind"] == "classifier" and lesson["dataset"] == "mnist"]
    accuracies = {lesson: read_json(built_project / "results" / lesson / "eval" / "metrics.json")["test_accuracy"]
                  for lesson in classifiers}
    assert len(accuracies) >= 9 and min(accuracies.values()) >= 0.85, accuracies


def test_metrics_and_plots_are_visible_to_dvc(built_project):
    shown = yaml.safe_load(dvc(built_project, "metrics", "show", "--json").stdout)
    files = next(iter(shown.values()))["data"]
    for lesson in MNIST_LESSONS:
        eval_metrics = files[f"results/{lesson}/eval/metrics.json"]["data"]
        assert {"test_accuracy", "test_loss", "epochs", "device", "data_source", "seed",
                "reference_accuracy"} <= set(eval_metrics)
        assert "train_seconds" in files[f"results/{lesson}/train/metrics.json"]["data"]
    plots = dvc(built_project, "plots", "show", "--json").stdout
    assert "results/mnist-cnn/train/plots/metrics/val/accuracy.tsv" in plots
    assert "confusion_matrix.png" in plots


def test_second_repro_does_nothing_and_a_param_edit_reruns_only_that_lesson(built_project, tmp_path):
    repo = clone(built_project, tmp_path / "repo")  # the default build stays as made for the other readers
    assert stages_ran(dvc(repo, "repro").stdout) == set()
    params_path = repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["lessons"]["mnist-cnn"]["optimizer"]["lr"] = 0.02
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    ran = stages_ran(dvc(repo, "repro").stdout)
    # `check` validates every params edit first; its record does not change, so nothing else reruns for it
    assert ran == {"check", "train@mnist-cnn", "evaluate@mnist-cnn", "ensemble-mnist", "report"}
