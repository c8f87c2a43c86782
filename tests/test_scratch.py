"""From-scratch models: hand-written gradients against PyTorch autograd, the mini framework, the lessons."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import dvc, project_params, read_json
from lessonflow.datasets import download_dataset, prepare_dataset
from lessonflow.kinds import mini_framework
from lessonflow.params import parse_params
from lessonflow.paths import Layout
from lessonflow.scratch import framework as fw
from lessonflow.scratch.classifiers import MODELS
from lessonflow.scratch.line import fit_line, knn_predict, line_gradients, mse, random_search
from stages.evaluate import evaluate as evaluate_stage
from stages.train import train as train_stage

RNG = np.random.default_rng(7)
MY_LESSONS = ["sign-logreg-scratch", "sign-nn2-scratch", "boston-knn", "boston-random-search",
              "boston-gradient-descent", "boston-mini-framework", "diabetes-mlp", "diabetes-mlp-relu"]


def autograd(loss_fn, params: dict[str, np.ndarray]) -> tuple[float, dict[str, np.ndarray]]:
    tensors = {name: torch.tensor(value, dtype=torch.float64, requires_grad=True) for name, value in params.items()}
    loss = loss_fn(tensors)
    loss.backward()
    return loss.item(), {name: t.grad.numpy() for name, t in tensors.items()}


@pytest.mark.parametrize("name", ["logreg", "nn2"])
def test_classifier_gradients_match_autograd_with_the_full_cross_entropy(name):
    x, y = RNG.standard_normal((30, 7)), (RNG.random(30) > 0.4).astype(float)
    model = MODELS[name]
    params = model.init(7, RNG)
    params = {k: v + RNG.standard_normal(np.shape(v)) * 0.5 for k, v in params.items()}  # away from the symmetric start
    cost, grads = model.cost_and_gradients(params, x, y)

    def torch_cost(p):
        xt = torch.from_numpy(x)
        z = xt @ p["w"] + p["b"] if name == "logreg" else torch.tanh(xt @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
        # BCE of both terms: the seed's nn2 cost dropped the (1 - y) log(1 - p) term
        return torch.nn.functional.binary_cross_entropy(torch.sigmoid(z), torch.from_numpy(y))

    expected_cost, expected = autograd(torch_cost, params)
    assert cost == pytest.approx(expected_cost, rel=1e-10)
    for key in params:
        np.testing.assert_allclose(grads[key], expected[key], rtol=1e-8, atol=1e-12)


def test_line_gradients_match_autograd():
    x, y = RNG.uniform(3, 9, 50), RNG.uniform(5, 50, 50)
    dk, db = line_gradients(x, y, 3.5, -2.0)
    _, expected = autograd(lambda p: ((p["k"] * torch.from_numpy(x) + p["b"] - torch.from_numpy(y)) ** 2).mean(),
                           {"k": np.array(3.5), "b": np.array(-2.0)})
    assert (dk, db) == pytest.approx((float(expected["k"]), float(expected["b"])), rel=1e-10)


def test_gradient_descent_reaches_least_squares_and_random_search_keeps_its_best():
    x = RNG.uniform(-1, 1, 200)
    y = 3 * x + 2 + RNG.normal(0, 0.1, 200)
    k, b, history = fit_line(x, y, 0.0, 0.0, learning_rate=0.1, steps=2000)
    assert (k, b) == pytest.approx(tuple(np.polyfit(x, y, 1)), abs=1e-6)
    assert history[-1] < history[0]
    best_k, best_b, best = random_search(x, y, np.random.default_rng(0), tries=300, low=-5, high=5)
    assert best[-1] == pytest.approx(mse(y, best_k * x + best_b))
    assert all(a >= b for a, b in zip(best, best[1:]))


def test_knn_averages_the_nearest_prices():
    x, y = np.array([1.0, 2.0, 3.0, 10.0]), np.array([10.0, 20.0, 30.0, 100.0])
    np.testing.assert_allclose(knn_predict(x, y, np.array([2.1, 9.0]), neighbours=3), [20.0, (100 + 30 + 20) / 3])


def small_network(x, y, weights):
    nodes = {"x": fw.Placeholder(x, name="x"), "y": fw.Placeholder(y, name="y"),
             **{k: fw.Placeholder(v.copy(), trainable=True, name=k) for k, v in weights.items()}}
    hidden = fw.Sigmoid(fw.Linear(nodes["x"], nodes["w1"], nodes["b1"]))
    # w2 is used twice, so its gradient must add up the contributions of both of its consumers
    out = fw.Linear(hidden, nodes["w2"], nodes["b2"])
    again = fw.Linear(fw.Sigmoid(out), nodes["w2t"], nodes["b2"])
    return nodes, fw.MSE(nodes["y"], again)


def test_framework_forward_and_backward_equal_pytorch():
    x, y = RNG.standard_normal((16, 5)), RNG.standard_normal((16, 4))
    weights = {"w1": RNG.standard_normal((5, 4)), "b1": RNG.standard_normal(4), "w2": RNG.standard_normal((4, 4)),
               "b2": RNG.standard_normal(4)}
    weights["w2t"] = weights["w2"].T.copy()
    nodes, cost = small_network(x, y, weights)
    graph = fw.topological_sort(cost)
    fw.forward(graph)
    fw.backward(graph)

    def torch_cost(p):
        hidden = torch.sigmoid(torch.from_numpy(x) @ p["w1"] + p["b1"])
        out = hidden @ p["w2"] + p["b2"]
        return ((torch.from_numpy(y) - (torch.sigmoid(out) @ p["w2t"] + p["b2"])) ** 2).mean()

    expected_cost, expected = autograd(torch_cost, weights)
    assert cost.value == pytest.approx(expected_cost, rel=1e-12)
    for name in weights:
        np.testing.assert_allclose(nodes[name].gradients[nodes[name]], expected[name], rtol=1e-9, atol=1e-12)
    before = nodes["x"].value.copy()
    fw.sgd(graph, 0.1)
    np.testing.assert_array_equal(nodes["x"].value, before)  # data is not trainable
    np.testing.assert_allclose(nodes["b1"].value, weights["b1"] - 0.1 * expected["b1"])


def test_topological_sort_orders_inputs_first_and_rejects_a_cycle():
    x, w, b = fw.Placeholder(name="x"), fw.Placeholder(name="w"), fw.Placeholder(name="b")
    linear = fw.Linear(x, w, b, name="linear")
    squash = fw.Sigmoid(linear, name="sigmoid")
    order = fw.topological_sort(squash)
    assert order.index(linear) > max(order.index(x), order.index(w), order.index(b))
    assert order[-1] is squash
    loop = fw.Sigmoid(squash, name="loop")
    linear.inputs.append(loop)  # linear now depends on its own output
    loop.outputs.append(linear)
    with pytest.raises(fw.GraphCycleError, match="cycle through: linear, loop, sigmoid"):
        fw.topological_sort(loop)


def test_framework_and_pytorch_twins_train_alike():
    data = {"x_train": RNG.standard_normal((64, 6)), "y_train": RNG.standard_normal((64, 1)) * 3 + 20}
    rng = np.random.default_rng(0)
    weights = mini_framework.initial_weights(6, 5, rng)
    schedule = [mini_framework.epoch_batches(64, 16, rng) for _ in range(3)]
    trained, losses = mini_framework.train_framework(weights, data, schedule, 0.01)
    net, torch_losses = mini_framework.train_pytorch(weights, data, schedule, 0.01)
    np.testing.assert_allclose(losses, torch_losses, rtol=1e-10)
    np.testing.assert_allclose(trained["w1"], net[0].weight.detach().numpy().T, rtol=1e-10)


BRIEF = {"sign-logreg-scratch": {"iterations": 20, "sklearn_max_iter": 20},
         "sign-nn2-scratch": {"iterations": 20, "sklearn_max_iter": 20},
         "boston-random-search": {"method": {"name": "random-search", "tries": 50}},
         "boston-gradient-descent": {"method": {"name": "gradient-descent", "steps": 50}},
         "boston-mini-framework": {"epochs": 3}, "diabetes-mlp": {"epochs": 2}, "diabetes-mlp-relu": {"epochs": 2}}


@pytest.fixture(scope="module")
def brief_runs(tmp_path_factory):
    """Every lesson of sections 2-3, trained briefly on the embedded data, twice over for determinism."""
    raw = project_params()
    raw["lessons"] = {lesson: {**raw["lessons"][lesson], **BRIEF.get(lesson, {})} for lesson in MY_LESSONS}
    raw["ensembles"] = {}
    params = parse_params(raw)
    results = []
    for lessons in (MY_LESSONS, ["sign-nn2-scratch", "boston-mini-framework"]):
        layout = Layout(tmp_path_factory.mktemp("brief"))
        for name in {params.lessons[lesson].dataset for lesson in lessons}:
            download_dataset(name, params.datasets[name], "embedded", layout.raw(name))
            prepare_dataset(name, params.datasets[name], layout.raw(name), layout.prepared(name))
        metrics = {}
        for lesson in lessons:
            train_stage(lesson, params, layout)
            metrics[lesson] = evaluate_stage(lesson, params, layout)
        results.append((layout, metrics))
    return results


def test_each_lesson_trains_briefly_on_embedded_data(brief_runs):
    layout, metrics = brief_runs[0]
    for lesson in MY_LESSONS:
        assert metrics[lesson]["data_source"] == "embedded"
        assert read_json(layout.eval_log(lesson) / "metrics.json")["data_source"] == "embedded"
        assert list((layout.eval_log(lesson) / "plots").rglob("*.png")), f"{lesson} drew no plot"
    for lesson in ("sign-logreg-scratch", "sign-nn2-scratch"):
        assert {"train_accuracy", "test_accuracy", "sklearn_train_accuracy",
                "sklearn_test_accuracy"} <= set(metrics[lesson])
    assert metrics["sign-logreg-scratch"]["test_accuracy"] > 0.9  # digits 0 and 1 are easy to tell apart
    curve = torch.load(layout.model("boston-gradient-descent"), weights_only=True)["curve"]
    assert curve[-1] < curve[0] and metrics["boston-gradient-descent"]["train_mse"] == pytest.approx(curve[-1].item())
    assert {"k", "b", "test_mse"} <= set(metrics["boston-random-search"])
    assert metrics["boston-knn"]["prediction_at_query"] > 0
    framework = metrics["boston-mini-framework"]
    timed = read_json(layout.train_log("boston-mini-framework") / "metrics.json")
    assert timed["framework_seconds"] > 0 and timed["pytorch_seconds"] > 0
    assert framework["framework_test_mse"] == pytest.approx(framework["pytorch_test_mse"], rel=1e-6)
    for lesson in ("diabetes-mlp", "diabetes-mlp-relu"):
        m = metrics[lesson]
        assert m["input_features"] == 30  # breast cancer: the width comes from the data
        assert m["beats_majority_baseline"] == (m["test_accuracy"] > m["majority_baseline_accuracy"])


def test_same_params_and_data_give_identical_metrics(brief_runs):
    """Evaluation metrics hold no timing (the train logs keep it), so they are equal as a whole."""
    (_, first), (_, second) = brief_runs
    for lesson, metrics in second.items():
        assert metrics == first[lesson], lesson


def test_default_profile_declares_every_scratch_and_tabular_lesson_to_dvc(built_project):
    """The session-wide real `dvc repro` of the default profile (shared with test_pipeline) built them all."""
    shown = json.loads(dvc(built_project, "metrics", "show", "--json").stdout)
    files = next(iter(shown.values()))["data"]
    for lesson in MY_LESSONS:
        assert files[f"results/{lesson}/eval/metrics.json"]["data"]["data_source"] == "embedded"
    gd = files["results/boston-gradient-descent/eval/metrics.json"]["data"]
    assert {"k", "b", "train_mse", "test_mse"} <= set(gd) and gd["feature"] == "BMI/10"
    plots = dvc(built_project, "plots", "show", "--json").stdout
    for image in ("fit.png", "learning_curve.png", "test_predictions.png", "confusion_matrix.png"):
        assert image in plots
