"""Combining trained classifiers from their saved class probabilities, without retraining any.

Probabilities are arrays shaped ``(members, samples, classes)``. The weighted average is
fitted on the validation split (held out of training by ``prepare_dataset``) and only
then scored on the test split, so the test set never chooses anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

BLEND = "fixed_blend"  # the fourth method, for an ensemble given fixed weights (001 §5.4's 0.6 / 0.4)
EPS = 1e-12  # floor for a probability inside a log: a confident wrong member must not make the loss infinite


@dataclass(frozen=True)
class Predictions:
    """One member's class probabilities on the validation and test splits, with the true labels."""

    val_probs: np.ndarray
    y_val: np.ndarray
    test_probs: np.ndarray
    y_test: np.ndarray


def load_predictions(path: Path) -> Predictions:
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: ensemble members must be classifiers whose evaluate stage "
                                "writes class probabilities (run dvc repro)")
    with np.load(path) as bundle:
        return Predictions(**{name: bundle[name] for name in ("val_probs", "y_val", "test_probs", "y_test")})


def majority_vote(probs: np.ndarray) -> np.ndarray:
    """Each member votes for its most probable class; the class with the most votes wins.

    Tie rule (deterministic): among the classes with the most votes, the one with the
    highest probability summed over all members wins; if that is tied too, the lowest class index.
    """
    classes = probs.shape[2]
    votes = (probs.argmax(2)[..., None] == np.arange(classes)).sum(0)
    tied = votes == votes.max(1, keepdims=True)
    return np.where(tied, probs.sum(0), -np.inf).argmax(1)


def soft_average(probs: np.ndarray) -> np.ndarray:
    return probs.mean(0)


def weighted_average(probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return np.tensordot(weights, probs, axes=1)


def fixed_blend(probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The seed's blend of logits, from the saved probabilities: a member's log-probabilities are its
    logits less one number per image, the same for every class, so the weighted sums rank the classes alike."""
    return np.tensordot(weights, np.log(np.maximum(probs, EPS)), axes=1)


def fit_weights(val_probs: np.ndarray, y_val: np.ndarray) -> np.ndarray:
    """Member weights on the simplex that minimise the validation negative log-likelihood.

    The loss is convex in the weights (minus the log of a linear function), so SLSQP from the
    uniform start finds the global minimum; members that add nothing get weight 0.
    """
    members = len(val_probs)
    true_class = val_probs[:, np.arange(len(y_val)), y_val].T  # (samples, members)

    def loss(weights: np.ndarray) -> float:
        return -np.log(np.maximum(true_class @ weights, EPS)).mean()

    def gradient(weights: np.ndarray) -> np.ndarray:
        return -(true_class / np.maximum(true_class @ weights, EPS)[:, None]).mean(0)

    result = minimize(loss, np.full(members, 1 / members), jac=gradient, method="SLSQP",
                      bounds=[(0.0, 1.0)] * members,
                      constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1, "jac": lambda w: np.ones(members)}],
                      options={"ftol": 1e-10, "maxiter": 1000})
    if not result.success:
        raise RuntimeError(f"fitting the ensemble weights on the validation split failed: {result.message}")
    weights = np.clip(result.x, 0.0, None)
    return weights / weights.sum()


def oracle_accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    """Share of samples that at least one member gets right: no way of combining them can beat it."""
    return float((probs.argmax(2) == y).any(0).mean())


def accuracy(predicted: np.ndarray, y: np.ndarray) -> float:
    return float((predicted == y).mean())


def stack(members: dict[str, Predictions]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stack the members' probabilities, refusing members scored on different samples or classes."""
    names = list(members)
    first = members[names[0]]
    for name in names[1:]:
        other = members[name]
        same = (np.array_equal(other.y_val, first.y_val) and np.array_equal(other.y_test, first.y_test)
                and other.test_probs.shape == first.test_probs.shape and other.val_probs.shape == first.val_probs.shape)
        if not same:
            raise ValueError(f"ensemble member {name!r} was scored on other samples or classes than {names[0]!r}: "
                             "members must be lessons of the same prepared dataset")
    val = np.stack([members[name].val_probs for name in names])
    test = np.stack([members[name].test_probs for name in names])
    return val, first.y_val, test, first.y_test


def combine(members: dict[str, Predictions], blend: list[float] | None = None,
            ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Score every member, every method and the oracle on the test split.

    Returns the metrics and each method's test predictions. The headline ``test_accuracy`` is
    the weighted average's: the one method whose only choice was made on validation data.
    ``blend``: fixed weights of the members, in their order, for a fourth method (``fixed_blend``).
    """
    val, y_val, test, y_test = stack(members)
    weights = fit_weights(val, y_val)
    predicted = {"majority_vote": majority_vote(test), "soft_average": soft_average(test).argmax(1),
                 "weighted_average": weighted_average(test, weights).argmax(1)}
    if blend is not None:
        predicted[BLEND] = fixed_blend(test, np.asarray(blend)).argmax(1)
    member_accuracy = {name: accuracy(test[i].argmax(1), y_test) for i, name in enumerate(members)}
    best_member = max(member_accuracy, key=member_accuracy.get)
    metrics = {
        "test_accuracy": round(accuracy(predicted["weighted_average"], y_test), 6),
        "methods": {method: round(accuracy(labels, y_test), 6) for method, labels in predicted.items()},
        "members": {name: round(value, 6) for name, value in member_accuracy.items()},
        "oracle": round(oracle_accuracy(test, y_test), 6),
        "best_member": best_member,
        "best_member_accuracy": round(member_accuracy[best_member], 6),
        "weights": {name: round(float(w), 6) for name, w in zip(members, weights)},
        "val_samples": int(len(y_val)),
        "test_samples": int(len(y_test)),
    }
    if blend is not None:
        metrics["blend"] = dict(zip(members, blend))
    return metrics, predicted


def table_rows(metrics: dict[str, Any]) -> list[tuple[str, str, float, str]]:
    """(what, name, test accuracy, weight) rows: members, then methods, then the oracle bound."""
    rows = [("member", name, value, f"{metrics['weights'][name]:.3f}") for name, value in metrics["members"].items()]
    rows += [("ensemble", method, value, "") for method, value in metrics["methods"].items()]
    rows.append(("bound", "oracle (any member right)", metrics["oracle"], ""))
    return rows
