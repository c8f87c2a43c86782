"""Binary classifiers of seed 000: logistic regression and a 2-layer tanh/sigmoid net.

Rows are samples (``x`` is (N, D), ``y`` is (N,) of 0/1). The cost is the full binary
cross-entropy, computed from the logits so that a confident wrong answer costs a
large finite number instead of ``log(0)``. The seed's 2-layer cost kept only the
``y·log(A2)`` term, so samples of class 0 never counted: fixed here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Params = dict[str, np.ndarray]


def sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z))  # 1 / (1 + e^-z) without overflow


def cross_entropy(z: np.ndarray, y: np.ndarray) -> float:
    """Mean of −y·log σ(z) − (1−y)·log(1−σ(z)), written as softplus(z) − y·z."""
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def logreg_init(dim: int, rng: np.random.Generator, weight: float = 0.01) -> Params:
    """The seed's start: every weight 0.01, bias 0 (no randomness needed)."""
    return {"w": np.full(dim, weight), "b": np.zeros(())}


def logreg_logits(p: Params, x: np.ndarray) -> tuple[np.ndarray, dict]:
    return x @ p["w"] + p["b"], {}


def logreg_gradients(p: Params, x: np.ndarray, y: np.ndarray, z: np.ndarray, cache: dict) -> Params:
    dz = (sigmoid(z) - y) / len(y)          # d cost / d z
    return {"w": x.T @ dz, "b": dz.sum()}


def nn2_init(dim: int, rng: np.random.Generator, hidden: int = 3, scale: float = 0.1) -> Params:
    """The seed's start: weights randn·0.1, biases 0."""
    return {"w1": rng.standard_normal((dim, hidden)) * scale, "b1": np.zeros(hidden),
            "w2": rng.standard_normal(hidden) * scale, "b2": np.zeros(())}


def nn2_logits(p: Params, x: np.ndarray) -> tuple[np.ndarray, dict]:
    a1 = np.tanh(x @ p["w1"] + p["b1"])
    return a1 @ p["w2"] + p["b2"], {"a1": a1}


def nn2_gradients(p: Params, x: np.ndarray, y: np.ndarray, z: np.ndarray, cache: dict) -> Params:
    a1 = cache["a1"]
    dz2 = (sigmoid(z) - y) / len(y)
    dz1 = np.outer(dz2, p["w2"]) * (1.0 - a1**2)   # tanh' = 1 − tanh²
    return {"w1": x.T @ dz1, "b1": dz1.sum(0), "w2": a1.T @ dz2, "b2": dz2.sum()}


@dataclass(frozen=True)
class ScratchClassifier:
    init: Callable[..., Params]
    logits: Callable[[Params, np.ndarray], tuple[np.ndarray, dict]]
    gradients: Callable[[Params, np.ndarray, np.ndarray, np.ndarray, dict], Params]

    def cost_and_gradients(self, p: Params, x: np.ndarray, y: np.ndarray) -> tuple[float, Params]:
        z, cache = self.logits(p, x)
        return cross_entropy(z, y), self.gradients(p, x, y, z, cache)

    def probabilities(self, p: Params, x: np.ndarray) -> np.ndarray:
        return sigmoid(self.logits(p, x)[0])


MODELS = {"logreg": ScratchClassifier(logreg_init, logreg_logits, logreg_gradients),
          "nn2": ScratchClassifier(nn2_init, nn2_logits, nn2_gradients)}


def gradient_descent(model: ScratchClassifier, p: Params, x: np.ndarray, y: np.ndarray, *,
                     learning_rate: float, iterations: int) -> tuple[Params, list[float]]:
    """Full-batch gradient descent; returns the final parameters and the cost before every step."""
    costs = []
    for _ in range(iterations):
        cost, grads = model.cost_and_gradients(p, x, y)
        costs.append(cost)
        p = {name: value - learning_rate * grads[name] for name, value in p.items()}
    return p, costs


def accuracy(probabilities: np.ndarray, y: np.ndarray) -> float:
    """Share of samples whose probability falls on the right side of 0.5 (the seed predicts 1 above 0.5)."""
    return float(np.mean((probabilities > 0.5) == (y == 1)))
