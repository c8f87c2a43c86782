"""The six Foundations lessons on the tutorials' own points: the numbers the seeds report, their plots, the fixes."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import dvc, project_params, read_json
from lessonflow.datasets import download_dataset, load_prepared, prepare_dataset
from lessonflow.datasets.toy import POINT_SETS, decode
from lessonflow.kinds.foundation_descent import MODELS, autograd_gradient, descend, hand_gradient
from lessonflow.params import ParamsError, parse_params
from lessonflow.paths import Layout
from stages.evaluate import evaluate as evaluate_stage
from stages.train import train as train_stage

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def params_for(lesson_id: str, **overrides):
    """The lesson's entry as params.yaml declares it (plus overrides), validated by its kind's schema."""
    raw = project_params()
    entry = {**raw["lessons"][lesson_id], **overrides}
    return parse_params({"datasets": {"toy": raw["datasets"]["toy"]}, "lessons": {lesson_id: entry}})


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> Layout:
    """A project folder holding only the prepared toy dataset, made by the download and prepare steps."""
    layout = Layout(tmp_path_factory.mktemp("foundations"))
    toy = params_for("gradient-descent").datasets["toy"]
    assert download_dataset("toy", toy, "embedded", layout.raw("toy")) == "embedded"
    prepare_dataset("toy", toy, layout.raw("toy"), layout.prepared("toy"))
    return layout


def run_lesson(layout: Layout, lesson_id: str, **overrides) -> dict:
    params = params_for(lesson_id, **overrides)
    train_stage(lesson_id, params, layout)
    return evaluate_stage(lesson_id, params, layout)


def assert_png(layout: Layout, lesson_id: str, name: str) -> None:
    data = (layout.eval_log(lesson_id) / "plots" / "images" / name).read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5_000, name


def curve_rows(layout: Layout, lesson_id: str, name: str) -> list[str]:
    return (layout.train_log(lesson_id) / "plots" / "metrics" / f"{name}.tsv").read_text().splitlines()[1:]


def test_toy_dataset_holds_the_tutorials_points(layout, tmp_path):
    data = load_prepared(layout.prepared("toy"))
    assert data["source"] == "embedded"
    assert data["linear"]["x"].flatten().tolist() == [1.0, 2.0, 3.0]
    assert data["linear"]["y"].flatten().tolist() == [2.0, 4.0, 6.0]
    assert data["hours"]["y"].flatten().tolist() == [0.0, 0.0, 1.0]
    assert data["car_prices"]["x"].shape == (7, 1) and data["book_pairs"]["y"].shape == (19, 1)
    assert "y" not in data["square"]
    (tmp_path / "toy.json").write_text(json.dumps({**POINT_SETS, "linear": {"x": [1.0, 2.0], "y": [2.0]}}))
    with pytest.raises(ValueError, match="point set 'linear' needs columns of equal, non-zero length"):
        decode("embedded", tmp_path, None)


def test_grid_search_finds_the_minimum_at_w_2(layout):
    metrics = run_lesson(layout, "fit-grid-search")
    assert metrics["w"] == pytest.approx(2.0) and metrics["final_loss"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["prediction_x4"] == pytest.approx(8.0)
    assert (metrics["surface"]["w"], metrics["surface"]["b"]) == (pytest.approx(3.0), pytest.approx(2.0))
    assert metrics["grid_points"] == 41 + 41 * 41 and metrics["data_source"] == "embedded"
    assert_png(layout, "fit-grid-search", "loss_over_w.png")
    assert_png(layout, "fit-grid-search", "loss_surface.png")


def test_gradient_descent_predicts_8_at_x4(layout):
    metrics = run_lesson(layout, "gradient-descent")
    for run in ("linear_batch", "linear_sample"):
        assert metrics[run]["prediction_x4_before"] == 4.0
        assert metrics[run]["prediction_x4"] == pytest.approx(8.0, abs=0.01)
    assert metrics["gradients"] == "hand" and metrics["seed"] == 0 and metrics["device"] == "cpu"
    rows = curve_rows(layout, "gradient-descent", "train/mse/linear_batch")
    assert len(rows) == 100 and float(rows[0].split("\t")[1]) == pytest.approx(14 / 3)  # MSE at w0 = 1: (1 + 4 + 9) / 3
    assert_png(layout, "gradient-descent", "loss_curves.png")


@pytest.mark.parametrize("model", sorted(MODELS))
def test_hand_written_gradients_equal_autograd(model):
    generator = torch.Generator().manual_seed(0)
    features = MODELS[model][0](torch.randn(5, 1, generator=generator))
    y = torch.randn(5, 1, generator=generator)
    theta = torch.randn(features.shape[1], 1, generator=generator)
    torch.testing.assert_close(hand_gradient(theta, features, y), autograd_gradient(theta, features, y))
    by_hand, _ = descend(features, y, w0=1.0, lr=0.01, epochs=20, mode="sample", gradient=hand_gradient)
    by_autograd, _ = descend(features, y, w0=1.0, lr=0.01, epochs=20, mode="sample", gradient=autograd_gradient)
    torch.testing.assert_close(by_hand, by_autograd)


def test_autograd_basics_reproduces_the_seeds(layout):
    metrics = run_lesson(layout, "autograd-basics")
    assert metrics["half_sum_square_grad"] == {"at_x2": 2.0, "at_x4": 4.0}
    assert metrics["linear_sample"]["prediction_x4"] == pytest.approx(8.0, abs=0.01)
    quadratic = metrics["quadratic_sample"]
    assert quadratic["prediction_x4_before"] == 21.0  # 1·16 + 1·4 + 1
    assert quadratic["prediction_x4"] == pytest.approx(8.5, abs=0.1)  # the seed: 8.5 (true 8)
    assert set(quadratic) >= {"w1", "w2", "b", "final_loss"}
    assert_png(layout, "autograd-basics", "loss_curves.png")


def test_each_optimizer_trains_a_fresh_model_from_the_same_weights(layout):
    """The 003 F fix: SGD, Rprop and Adamax together give each the result it gets alone."""
    together = run_lesson(layout, "linreg-optimizers", epochs=60)
    state = torch.load(layout.model("linreg-optimizers"), weights_only=True)
    assert {curve[0] for curve in state["curves"].values()} == {state["curves"]["sgd"][0]}
    assert len({metrics["w"] for name, metrics in together.items() if name in state["fitted"]}) == 3
    alone = run_lesson(layout, "linreg-optimizers", epochs=60, optimizers=["adamax"])  # the seed's last, most hurt
    assert alone["adamax"] == together["adamax"]
    assert alone["initial"] == together["initial"]
    assert len(curve_rows(layout, "linreg-optimizers", "train/loss/adamax")) == 60
    assert_png(layout, "linreg-optimizers", "loss_curves.png")
    assert_png(layout, "linreg-optimizers", "fitted_line.png")


def test_car_prices_line_fits_with_loss_near_zero(layout):
    metrics = run_lesson(layout, "linreg-car-prices")
    fitted = metrics["sgd"]
    assert fitted["final_loss"] < 0.01 and fitted["w"] == pytest.approx(-0.5, abs=0.05)
    assert fitted["prediction_x100"] == pytest.approx(fitted["w"] * 100 + fitted["b"], abs=1e-3)
    assert_png(layout, "linreg-car-prices", "fitted_line.png")


def test_logistic_hours_passes_at_four_hours(layout):
    metrics = run_lesson(layout, "logistic-hours")
    fitted = metrics["sgd"]
    assert 0.5 < fitted["prediction_x4"] < 1.0 and fitted["w"] > 0
    assert -fitted["b"] / fitted["w"] == pytest.approx(2.5, abs=0.5)  # 50 % between 2 h (fail) and 3 h (pass)
    assert_png(layout, "logistic-hours", "probability_curve.png")
    assert_png(layout, "logistic-hours", "loss_curves.png")


def test_bad_foundation_params_name_the_key(layout):
    with pytest.raises(ValueError, match=r"lessons\.gradient-descent\.points: no point set 'nope' .*available: "
                                         r"affine, book_pairs, car_prices, hours, linear"):
        run_lesson(layout, "gradient-descent", points="nope")
    with pytest.raises(ParamsError, match=r"lessons\.linreg-optimizers\.optimizers: each optimizer may appear once"):
        params_for("linreg-optimizers", optimizers=["sgd", "sgd"])
    with pytest.raises(ParamsError, match=r"lessons\.fit-grid-search\.w_range: .*stop \(0\.0\) must be above start"):
        params_for("fit-grid-search", w_range={"start": 1.0, "stop": 0.0, "step": 0.1})


@pytest.mark.long  # the contributor's tier stays under 10 minutes (BENCHMARKS.md, test tiers)
def test_dvc_builds_a_foundation_lesson(project):
    dvc(project, "repro", "evaluate@gradient-descent")
    metrics = read_json(project / "results" / "gradient-descent" / "eval" / "metrics.json")
    assert metrics["linear_batch"]["prediction_x4"] == pytest.approx(8.0, abs=0.01)
    shown = json.loads(dvc(project, "metrics", "show", "--json").stdout)
    files = next(iter(shown.values()))["data"]
    assert files["results/gradient-descent/eval/metrics.json"]["data"]["data_source"] == "embedded"
    assert (project / "models" / "gradient-descent" / "model.pt").is_file()
    assert (project / "results" / "gradient-descent" / "eval" / "plots" / "images" / "loss_curves.png").is_file()
