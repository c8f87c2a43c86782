"""The ``mini_framework`` lesson kind: seed 004 days 2-3, the home-made autograd engine on Boston housing.

The seed's network (13 → 10 sigmoid → 1, MSE, SGD) is trained twice from the *same* weights on the
*same* batches, with :mod:`lessonflow.scratch.framework` and as the equivalent ``torch.nn.Sequential``,
both in float64, so their test MSE should agree and their wall times show the engine's overhead.
Fixed from the seed: features standardised on the training split only, every row once per epoch in a
seeded order (the seed fed PyTorch empty batches), and a real test MSE (the seed's summed a broadcast
matrix of differences).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from pydantic import Field
from torch import nn

from lessonflow.contract import Checkpoint, Evaluated, Prepared, Saved, Trained
from lessonflow.figures import curve_panels, predicted_against_actual
from lessonflow.records import carried_facts
from lessonflow.schema import LessonBase
from lessonflow.scratch import framework as fw

CURVE_POINTS = 100
ENGINES = ("framework", "pytorch")


class FrameworkLesson(LessonBase):
    hidden: int = Field(10, gt=0)
    learning_rate: float = Field(1e-2, gt=0)
    epochs: int = Field(gt=0)
    batch_size: int = Field(16, gt=0)


def standardised(data: Prepared) -> dict[str, np.ndarray]:
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


Lesson = FrameworkLesson


def train(lesson: FrameworkLesson, *, name: str, data: Prepared, device: torch.device,
          checkpoint: Checkpoint) -> Trained:
    """Both engines from the same initial weights on the same batches, each timed."""
    splits = standardised(data)
    rng = np.random.default_rng(lesson.seed)
    weights = initial_weights(splits["x_train"].shape[1], lesson.hidden, rng)
    schedule = [epoch_batches(len(splits["y_train"]), lesson.batch_size, rng) for _ in range(lesson.epochs)]
    started = time.perf_counter()
    trained, framework_losses = train_framework(weights, splits, schedule, lesson.learning_rate)
    framework_seconds = time.perf_counter() - started
    started = time.perf_counter()
    net, pytorch_losses = train_pytorch(weights, splits, schedule, lesson.learning_rate)
    pytorch_seconds = time.perf_counter() - started
    every = max(1, lesson.epochs // CURVE_POINTS)
    return Trained(
        states={"model": {"framework": {key: torch.from_numpy(value) for key, value in trained.items()},
                          "pytorch": net.state_dict(),
                          "losses": {"framework": torch.tensor(framework_losses),
                                     "pytorch": torch.tensor(pytorch_losses)}}},
        seconds=framework_seconds + pytorch_seconds, device="cpu",
        summary={"framework_seconds": round(framework_seconds, 3), "pytorch_seconds": round(pytorch_seconds, 3),
                 "epochs": lesson.epochs},
        history=[{"framework": a, "pytorch": b} for a, b in zip(framework_losses[::every], pytorch_losses[::every])],
        curves={engine: f"train/mse/{engine}" for engine in ENGINES})


def framework_predict(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    nodes, graph = build_graph(weights)
    nodes["x"].value, nodes["y"].value = x, np.zeros((len(x), 1))
    fw.forward(graph)
    return graph[-2].value  # linear2, the node before the loss


def evaluate(lesson: FrameworkLesson, *, name: str, data: Prepared, device: torch.device,
             saved: Saved) -> Evaluated:
    splits = standardised(data)
    state = saved.states["model"]
    net = torch_net({key: value.numpy() for key, value in state["framework"].items()})
    net.load_state_dict(state["pytorch"])
    with torch.no_grad():
        torch_pred = net(torch.from_numpy(splits["x_test"])).numpy()
    predicted = {"framework": framework_predict({k: v.numpy() for k, v in state["framework"].items()},
                                                splits["x_test"]),
                 "pytorch": torch_pred}
    trained = saved.metrics
    metrics = {f"{engine}_test_mse": round(float(np.mean((values - splits["y_test"]) ** 2)), 6)
               for engine, values in predicted.items()}
    metrics.update(max_prediction_gap=float(np.abs(predicted["framework"] - predicted["pytorch"]).max()),
                   epochs=trained["epochs"], **carried_facts(trained), reference_accuracy=lesson.reference_accuracy)
    return Evaluated(metrics, images={
        "test_predictions.png": predicted_against_actual(
            splits["y_test"][:, 0], {k: v[:, 0] for k, v in predicted.items()}, f"{name}: test split"),
        "loss_curves.png": curve_panels(
            {f"{engine}: mean training MSE per epoch": state["losses"][engine].tolist() for engine in ENGINES},
            f"{name}: training loss"),
    }, arrays={"predictions.npz": {"y_test": splits["y_test"], **predicted}})
