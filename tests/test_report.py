"""The report and `lessonflow compare`: built from real DVC runs, readable for lessons of any kind."""

from __future__ import annotations

import base64
import json
import re
from types import SimpleNamespace

import pytest
import yaml
from dvclive import Live

from conftest import BIN, clone, commit_all, dvc, read_json, run, stages_ran
from lessonflow.compare import Change, Comparison, headline, result_id, table
from lessonflow.figures import plt
from lessonflow.paths import Layout
from lessonflow.report import Report, Trends, collect_lesson, render_html, render_markdown, verdict

PNG = b"\x89PNG\r\n\x1a\n"


def test_report_of_the_default_profile_shows_every_lesson_and_only_images_that_exist(built_project):
    params = yaml.safe_load((built_project / "params.yaml").read_text())
    reports = built_project / "reports"
    markdown, page = (reports / "report.md").read_text(), (reports / "report.html").read_text()
    for lesson in params["lessons"]:
        assert f"### {lesson}" in markdown and f"<h3>{lesson}</h3>" in page
        row = next(line for line in markdown.splitlines() if line.startswith(f"| {lesson} "))
        assert re.search(r"matches|beats|falls short|inconclusive|no reference result|not comparable", row), row
    for name in params["ensembles"]:
        assert f"ensemble-{name}" in markdown and "weighted_average" in markdown and "oracle" in markdown
    assert "## Since HEAD" in markdown and "<h2>Since HEAD</h2>" in page

    linked = re.findall(r"!\[[^]]*\]\(([^)]+)\)", markdown)
    assert linked and all((reports / link).is_file() for link in linked)
    classifiers = [lesson for lesson, entry in params["lessons"].items() if entry["kind"] == "classifier"]
    for lesson in classifiers:  # the pictures a person looks at: curves, confusion matrix, mistakes
        assert {f"images/{lesson}/{name}" for name in ("curves.png", "eval-confusion_matrix.png",
                                                       "eval-misclassified.png")} <= set(linked)
    sources = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(sources) == len(linked), "the HTML shows the same pictures as the Markdown"
    for source in sources:  # self-contained: every picture is embedded, none is fetched
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(PNG)


def test_a_member_change_reruns_only_its_ensemble_and_the_report_and_compare_shows_it(built_project, tmp_path):
    """One params edit, built and committed: the rerun set, the report's "since" row, `lessonflow compare`."""
    lessonflow = str(BIN / "lessonflow")
    built_project = clone(built_project, tmp_path / "repo")  # the default build stays as made for the other readers
    params_path = built_project / "params.yaml"
    metrics_file = built_project / "results" / "mnist-logreg" / "eval" / "metrics.json"
    before = read_json(metrics_file)["test_accuracy"]
    params = yaml.safe_load(params_path.read_text())
    lesson = params["lessons"]["mnist-logreg"]
    lesson["epochs"] = max(1, lesson["epochs"] // 3)
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        ran = stages_ran(dvc(built_project, "repro").stdout)
        assert ran == {"check", "train@mnist-logreg", "evaluate@mnist-logreg", "ensemble-mnist", "report"}
        after = read_json(metrics_file)["test_accuracy"]
        assert after != before
        expected = re.compile(rf"mnist-logreg\s*\|?\s*test_accuracy\s*\|?\s*{before:.4f}\s*\|?\s*{after:.4f}\s*\|?\s*"
                              rf"{after - before:+.4f} \((better|worse)\)")
        since = (built_project / "reports" / "report.md").read_text().split("## Since HEAD")[1]
        assert expected.search(since), since
        workspace = run(built_project, lessonflow, "compare").stdout  # default: HEAD against the workspace
        assert expected.search(workspace) and "HEAD" in workspace and "workspace" in workspace, workspace
    finally:
        commit_all(built_project, "mnist-logreg for a third of its epochs")
    shown = run(built_project, lessonflow, "compare", "HEAD~1", "HEAD", "--md", "change.md").stdout
    assert expected.search(shown), shown
    markdown = (built_project / "change.md").read_text()
    assert markdown.startswith("| lesson ") and expected.search(markdown), markdown
    (built_project / "change.md").unlink()
    failed = run(built_project, lessonflow, "compare", "no-such-rev", check=False)
    assert failed.returncode == 1 and "no-such-rev" in failed.stderr


def test_headline_metric_falls_back_for_kinds_without_accuracy():
    assert headline({"test_accuracy": 0.9, "test_loss": 0.3}) == ("test_accuracy", 0.9)
    assert headline({"test_rmse": 2.0, "test_mse": 4.0, "seed": 0}) == ("test_mse", 4.0)
    assert headline({"final_loss": 0.03, "epochs": 10, "train_seconds": 1.5}) == ("final_loss", 0.03)
    assert headline({"w": 2.0, "b": 0.1, "seed": 1}) == ("b", 0.1)
    assert headline({"framework_seconds": 3.0, "framework_test_mse": 11.9, "pytorch_test_mse": 12.1}) == (
        "framework_test_mse", 11.9)  # a timing is never the result
    assert headline({"device": "cpu", "epochs": 3}) is None
    assert headline({"test_days": 1002, "test_rmse": 19.94}) == ("test_rmse", 19.94)  # a count is never the result
    assert headline({"grid_points": 1722, "iterations": 100, "best_epoch": 21}) is None
    assert result_id("results/mnist-cnn/eval/metrics.json") == "mnist-cnn"
    assert result_id("results/ensemble-mnist/metrics.json") == "ensemble-mnist"
    assert result_id("results/mnist-cnn/train/metrics.json") is None


def test_the_flow_stage_table_headlines_a_training_summary_by_its_held_out_split(tmp_path):
    """The flow's stage table reads a training stage's DVCLive summary, nested by split, with the report's rule."""
    from flows.dvc_stages import _headline

    classifier, regression, nothing = (tmp_path / f"{name}.json" for name in ("classifier", "regression", "nothing"))
    classifier.write_text(json.dumps({"train": {"loss": 0.1, "accuracy": 0.99}, "val": {"loss": 0.2, "accuracy": 0.95},
                                      "step": 9, "train_seconds": 3.2}))
    regression.write_text(json.dumps({"train": {"loss": 0.5}, "val": {"loss": 0.71}, "best_epoch": 21,
                                      "best_val_loss": 0.6875}))
    nothing.write_text(json.dumps({"grid_points": 1722, "device": "cpu"}))
    assert _headline([classifier]) == "val.accuracy = 0.95"
    assert _headline([regression]) == "best_val_loss = 0.6875"
    assert _headline([nothing, tmp_path / "not-built.json", classifier]) == "val.accuracy = 0.95"
    assert _headline([nothing]) == ""


@pytest.mark.parametrize("result, reference, source, expected", [
    (("test_accuracy", 0.9800), 0.98, "mirror", "one seed: matches (+0.0 pts)"),
    (("test_accuracy", 0.9849), 0.98, "official", "one seed: matches (+0.5 pts)"),
    (("test_accuracy", 0.9900), 0.98, "mirror", "one seed: beats (+1.0 pts)"),
    (("test_accuracy", 0.9700), 0.98, "mirror", "one seed: falls short (-1.0 pts)"),
    (("test_accuracy", 0.9700), 0.98, "embedded", "one seed: falls short (-1.0 pts), on sample data"),
    (("test_accuracy", 1.0), 0.8779, "synthetic", "one seed: beats (+12.2 pts), on synthetic data"),  # CIFAR's stand-in shapes
    (("test_mse", 0.03), 0.98, "embedded", "not comparable (test_mse vs a reference accuracy)"),
    (("test_mse", 0.03), None, "inline", "no reference result"),
    (None, 0.98, None, "not built"),
])
def test_verdict_compares_accuracy_with_the_tutorial_within_half_a_point(result, reference, source, expected):
    assert verdict(result, reference, source) == expected


def test_a_lesson_of_an_unseen_kind_gets_its_result_curves_and_pictures(tmp_path):
    """An autoencoder-like lesson: no accuracy, a training loss curve, one logged image."""
    layout = Layout(tmp_path)
    with Live(dir=str(layout.train_log("mnist-ae")), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        for loss in (0.3, 0.1, 0.05):
            live.log_metric("train/loss", loss)
            live.next_step()
    with Live(dir=str(layout.eval_log("mnist-ae")), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        live.summary.update(test_mse=0.031, device="cpu", data_source="embedded", train_seconds=2.5)
        figure, _ = plt.subplots()
        live.log_image("reconstructions.png", figure)
    lesson = SimpleNamespace(kind="autoencoder", dataset="mnist", reference="train loss ≈0.032–0.036",
                             reference_accuracy=None, beyond_tutorial=True)
    images = tmp_path / "reports" / "images"
    result = collect_lesson("mnist-ae", lesson, layout, images)
    assert result.headline == ("test_mse", 0.031) and result.verdict == "no reference result"
    assert [image.name for image in result.images] == ["curves.png", "eval-reconstructions.png"]
    assert all(image.read_bytes().startswith(PNG) for image in result.images)
    missing = collect_lesson("mnist-gan", SimpleNamespace(kind="gan", dataset="mnist", reference="none reported",
                                                          reference_accuracy=None, beyond_tutorial=False), layout, images)
    changes = Comparison("HEAD", "workspace", [Change("mnist-ae", "test_mse", 0.04, 0.031)], [])
    report = Report([result, missing], [], changes, "embedded", Trends(None, [], "no history here"))
    markdown = render_markdown(report, tmp_path / "reports")
    assert "| mnist-ae " in markdown and "0.031 test_mse" in markdown and "2.5 s" in markdown
    assert "| mnist-gan " in markdown and "not built" in markdown
    assert "| mnist-ae (beyond the tutorial) " in markdown  # a lesson past its tutorial says so, here and below
    assert "autoencoder on mnist; beyond the tutorial, measured against train loss" in markdown
    assert "gan on mnist; tutorial: none reported" in markdown
    assert "beyond the tutorial, measured against train loss" in render_html(report)
    assert "-0.0090 (better)" in markdown  # a lower error is better
    assert render_html(report).count("<img ") == 2


def log_losses(layout: Layout, lesson: str, losses: list[float]) -> None:
    with Live(dir=str(layout.train_log(lesson)), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        for loss in losses:
            live.log_metric("train/loss", loss)
            live.next_step()


def test_the_report_redraws_only_the_curves_whose_data_changed(tmp_path, monkeypatch):
    layout = Layout(tmp_path)
    lesson = SimpleNamespace(kind="classifier", dataset="mnist", reference="", reference_accuracy=None,
                             beyond_tutorial=False)
    for lesson_id in ("kept", "edited"):
        log_losses(layout, lesson_id, [0.3, 0.1])
        collect_lesson(lesson_id, lesson, layout, layout.reports / "images")  # the last report
    before = {lesson_id: (layout.reports / "images" / lesson_id / "curves.png").read_bytes()
              for lesson_id in ("kept", "edited")}
    log_losses(layout, "edited", [0.3, 0.2, 0.1])
    import lessonflow.report

    drawn = []
    real = lessonflow.report.training_curves
    monkeypatch.setattr(lessonflow.report, "training_curves", lambda panels, title: drawn.append(title) or real(panels, title))
    after = {lesson_id: collect_lesson(lesson_id, lesson, layout, tmp_path / "next").images[0].read_bytes()
             for lesson_id in ("kept", "edited")}
    assert drawn == ["edited: per-epoch curves"]
    assert after["kept"] == before["kept"] and after["edited"] != before["edited"]


def test_compare_table_marks_new_and_removed_lessons_and_a_changed_data_source():
    changes = [Change("a", "test_accuracy", None, 0.9), Change("b", "test_accuracy", 0.8, None),
               Change("c", "test_accuracy", 0.9, 0.95, "data source changed: embedded → mirror")]
    comparison = Comparison("v1", "v2", changes, ["v1: results/a/eval/metrics.json: no metrics"])
    text = table(comparison)
    assert re.search(r"a\s+test_accuracy\s+—\s+0\.9000\s+new", text)
    assert re.search(r"b\s+test_accuracy\s+0\.8000\s+—\s+removed", text)
    assert re.search(r"c .*\+0\.0500 \(better\)\s+data source changed: embedded → mirror", text)
    assert "! v1: results/a/eval/metrics.json: no metrics" in text


def test_the_trends_shade_the_range_of_each_revisions_seeds():
    from datetime import datetime

    from matplotlib.collections import PolyCollection

    from lessonflow.history import Point, Revision
    from lessonflow.report import trend_figure

    revisions = [Revision(str(day) * 40, f"commit {day}", datetime(2026, 12, day)) for day in (1, 2, 3)]
    series = {"mnist-logreg": [Point(revisions[0], "test_accuracy", 0.90, "embedded", (0.88, 0.91)),
                               Point(revisions[1], "test_accuracy", 0.92, "embedded", (0.91, 0.94)),
                               Point(revisions[2], "test_accuracy", 0.93, "embedded")],  # one seed: no range
              "stock-lstm": [Point(revision, "test_rmse", 10.0 + day, "embedded") for day, revision in enumerate(revisions)]}
    figure, number = trend_figure(series)
    try:
        panels = {ax.get_title(): ax for ax in figure.axes}
        bands = [shape for shape in panels["mnist-logreg: test_accuracy"].collections if isinstance(shape, PolyCollection)]
        assert len(bands) == 1, "the seeds' range is not drawn"
        corners = {(round(x, 6), round(y, 6)) for x, y in bands[0].get_paths()[0].vertices}
        assert {(1, 0.88), (2, 0.91), (1, 0.91), (2, 0.94)} <= corners  # each revision's min and max
        assert max(y for _, y in corners) == 0.94 and min(y for _, y in corners) == 0.88
        assert not [shape for shape in panels["stock-lstm: test_rmse"].collections if isinstance(shape, PolyCollection)]
        assert list(number.values()) == [1, 2, 3]
    finally:
        plt.close(figure)
