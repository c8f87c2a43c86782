"""Price from one feature, three ways (seed 004 day 1): nearest neighbours, random search, gradient descent.

The line is ``y = k·x + b`` and the loss is the mean squared error throughout.
"""

from __future__ import annotations

import numpy as np


def mse(y: np.ndarray, y_hat: np.ndarray) -> float:
    return float(np.mean((np.asarray(y) - np.asarray(y_hat)) ** 2))


def knn_predict(x_known: np.ndarray, y_known: np.ndarray, queries: np.ndarray, neighbours: int = 3) -> np.ndarray:
    """Mean target of the ``neighbours`` known points closest to each query (squared distance, stable ties)."""
    distances = (np.asarray(queries, dtype=float)[:, None] - x_known[None, :]) ** 2
    nearest = np.argsort(distances, axis=1, kind="stable")[:, :neighbours]
    return y_known[nearest].mean(axis=1)


def random_search(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, *, tries: int, low: int, high: int
                  ) -> tuple[float, float, list[float]]:
    """Draw integer (k, b) in [low, high] ``tries`` times and keep the best; also the best loss after each try."""
    best_k, best_b, best, history = 0.0, 0.0, float("inf"), []
    for _ in range(tries):
        k, b = rng.integers(low, high, endpoint=True, size=2)
        loss = mse(y, k * x + b)
        if loss < best:
            best_k, best_b, best = float(k), float(b), loss
        history.append(best)
    return best_k, best_b, history


def line_gradients(x: np.ndarray, y: np.ndarray, k: float, b: float) -> tuple[float, float]:
    """∂/∂k and ∂/∂b of mean((k·x + b − y)²): 2·mean(err·x) and 2·mean(err)."""
    error = k * x + b - y
    return float(2 * np.mean(error * x)), float(2 * np.mean(error))


def fit_line(x: np.ndarray, y: np.ndarray, k: float, b: float, *, learning_rate: float, steps: int
             ) -> tuple[float, float, list[float]]:
    """Gradient descent from (k, b); both partial derivatives are taken at the same point before updating."""
    history = []
    for _ in range(steps):
        dk, db = line_gradients(x, y, k, b)
        k, b = k - learning_rate * dk, b - learning_rate * db
        history.append(mse(y, k * x + b))
    return k, b, history
