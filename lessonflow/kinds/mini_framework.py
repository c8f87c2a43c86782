"""The ``mini_framework`` lesson kind: seed 004 days 2-3, the home-made autograd engine on Boston housing.

The network of the seed's ``MyFrame.py`` (13 → 10 sigmoid → 1, MSE, SGD lr 1e-2,
batch 16, randn weights, zero biases) is trained twice from the *same* initial weights
on the *same* batches: once with :mod:`lessonflow.scratch.framework`, once as the
equivalent ``torch.nn.Sequential``. Both run in float64, so their held-out MSE should
agree closely; the wall times show what the framework overhead costs.

Fixes of the seed: features are standardised with the training split's mean and std
(the seed used the whole data set), each epoch visits every training row once in a
seeded random order (the seed drew bootstrap samples for its own engine but fed
PyTorch zero batches per epoch), and the score is the test MSE (the seed's "score" summed
a broadcast (102, 102) matrix of differences).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from lessonflow.atomic import atomic_path
from lessonflow.datasets import load_prepared
from lessonflow.figures import curve_panels, predicted_against_actual
from lessonflow.kinds import LessonKind
from lessonflow.lessons import LessonRun
from lessonflow.records import carried_facts, live_log, log_curves, read_metrics, run_facts
from lessonflow.runtime import make_deterministic
from lessonflow.schema import LessonBase
from lessonflow.scratch import framework as fw

CURVE_POINTS = 100
ENGINES = ("framework", "pytorch")


class FrameworkLesson(LessonBase):
    hidden: int = Field(10, gt=0)
    learning_rate: float = Field(1e-2, gt=0)
    epochs: int = Field(gt=0)
    batch_size: int = Field(16, gt=0)


def standardised(data: dict[str, Any]) -> dict[str, np.ndarray]:
    x_train = data["x_train"].double().numpy()
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return {"x_train": (x_train - mean) / std, "x_test": (data["x_test"].double().numpy() - mean) / std,
            "y_train": data["y_train"].double().numpy()[:, None], "y_test": data["y_test"].double().numpy()[:, None]}


def initial_weights(features: int, hidden: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"w1": rng.standard_normal((features, hidden)), "b1": np.zeros(hidden),
            "w2": rng.standard_normal((hidden, 1)), "b2": np.zeros(1)}


def epoch_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One seeded shuffle per epoch; like the seed, n // batch_size full batches and the rest left out."""
    order = rng.permutation(n)
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(n // batch_size)]


def build_graph(weights: dict[str, np.ndarray]) -> tuple[dict[str, fw.Placeholder], list[fw.Node]]:
    nodes = {"x": fw.Placeholder(name="x"), "y": fw.Placeholder(name="y"),
             **{name: fw.Placeholder(value.copy(), trainable=True, name=name) for name, value in weights.items()}}
    hidden = fw.Sigmoid(fw.Linear(nodes["x"], nodes["w1"], nodes["b1"], name="linear1"), name="sigmoid")
    cost = fw.MSE(nodes["y"], fw.Linear(hidden, nodes["w2"], nodes["b2"], name="linear2"), name="mse")
    return nodes, fw.topological_sort(cost)


def train_framework(weights, data, schedule, lr) -> tuple[dict[str, np.ndarray], list[float]]:
    nodes, graph = build_graph(weights)
    losses = []
    for batches in schedule:
        total = 0.0
        for rows in batches:
            nodes["x"].value, nodes["y"].value = data["x_train"][rows], data["y_train"][rows]
            fw.forward(graph)
            fw.backward(graph)
            fw.sgd(graph, lr)
            total += graph[-1].value
        losses.append(total / len(batches))
    return {name: nodes[name].value for name in weights}, losses


def torch_net(weights: dict[str, np.ndarray]) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(*weights["w1"].shape), nn.Sigmoid(), nn.Linear(*weights["w2"].shape)).double()
    with torch.no_grad():
        for layer, (w, b) in zip((net[0], net[2]), (("w1", "b1"), ("w2", "b2"))):
            layer.weight.copy_(torch.from_numpy(weights[w].T))
            layer.bias.copy_(torch.from_numpy(weights[b]))
    return net


def train_pytorch(weights, data, schedule, lr) -> tuple[nn.Sequential, list[float]]:
    net = torch_net(weights)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    loss_fn = nn.MSELoss()
    x, y = torch.from_numpy(data["x_train"]), torch.from_numpy(data["y_train"])
    losses = []
    for batches in schedule:
        total = 0.0
        for rows in batches:
            index = torch.from_numpy(rows)
            loss = loss_fn(net(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        losses.append(total / len(batches))
    return net, losses


def train(run: LessonRun) -> None:
    lesson, layout = run.lesson, run.layout
    make_deterministic(lesson.seed)
    prepared = load_prepared(layout.prepared(lesson.dataset))
    data = standardised(prepared)
    rng = np.random.default_rng(lesson.seed)
    weights = initial_weights(data["x_train"].shape[1], lesson.hidden, rng)
    schedule = [epoch_batches(len(data["y_train"]), lesson.batch_size, rng) for _ in range(lesson.epochs)]
    started = time.perf_counter()
    trained, framework_losses = train_framework(weights, data, schedule, lesson.learning_rate)
    framework_seconds = time.perf_counter() - started
    started = time.perf_counter()
    net, pytorch_losses = train_pytorch(weights, data, schedule, lesson.learning_rate)
    pytorch_seconds = time.perf_counter() - started
    with atomic_path(layout.model(run.lesson_id)) as tmp:
        torch.save({"framework": {name: torch.from_numpy(value) for name, value in trained.items()},
                    "pytorch": net.state_dict(),
                    "losses": {"framework": torch.tensor(framework_losses), "pytorch": torch.tensor(pytorch_losses)}},
                   tmp)
    with live_log(layout.train_log(run.lesson_id)) as live:
        every = max(1, lesson.epochs // CURVE_POINTS)
        rows = [{"framework": a, "pytorch": b} for a, b in zip(framework_losses[::every], pytorch_losses[::every])]
        log_curves(live, rows, {engine: f"train/mse/{engine}" for engine in ENGINES})
        live.summary.update(framework_seconds=round(framework_seconds, 3), pytorch_seconds=round(pytorch_seconds, 3),
                            epochs=lesson.epochs,
                            **run_facts(framework_seconds + pytorch_seconds, "cpu", prepared["source"], lesson.seed,
                                        layout.model(run.lesson_id)))


def framework_predict(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    nodes, graph = build_graph(weights)
    nodes["x"].value, nodes["y"].value = x, np.zeros((len(x), 1))
    fw.forward(graph)
    return graph[-2].value  # linear2, the node before the loss


def evaluate(run: LessonRun) -> dict[str, Any]:
    lesson, layout = run.lesson, run.layout
    prepared = load_prepared(layout.prepared(lesson.dataset))
    data = standardised(prepared)
    saved = torch.load(layout.model(run.lesson_id), weights_only=True)
    net = torch_net({name: value.numpy() for name, value in saved["framework"].items()})
    net.load_state_dict(saved["pytorch"])
    with torch.no_grad():
        torch_pred = net(torch.from_numpy(data["x_test"])).numpy()
    predicted = {"framework": framework_predict({k: v.numpy() for k, v in saved["framework"].items()}, data["x_test"]),
                 "pytorch": torch_pred}
    trained = read_metrics(layout.train_log(run.lesson_id))
    metrics = {f"{engine}_test_mse": round(float(np.mean((values - data["y_test"]) ** 2)), 6)
               for engine, values in predicted.items()}
    metrics.update(framework_seconds=trained["framework_seconds"], pytorch_seconds=trained["pytorch_seconds"],
                   max_prediction_gap=float(np.abs(predicted["framework"] - predicted["pytorch"]).max()),
                   epochs=trained["epochs"], **carried_facts(trained), reference_accuracy=lesson.reference_accuracy)
    with live_log(layout.eval_log(run.lesson_id)) as live:
        live.summary.update(metrics)
        live.log_image("test_predictions.png", predicted_against_actual(
            data["y_test"][:, 0], {k: v[:, 0] for k, v in predicted.items()}, f"{run.lesson_id}: test split"))
        live.log_image("loss_curves.png", curve_panels(
            {f"{engine}: mean training MSE per epoch": saved["losses"][engine].tolist() for engine in ENGINES},
            f"{run.lesson_id}: training loss"))
    return metrics


KIND = LessonKind(schema=FrameworkLesson, train=train, evaluate=evaluate)
