"""The book's simple recurrent network (001 §9.2 SRN) in NumPy: tanh hidden layer, softmax output, BPTT by hand.

``h_t = tanh(x_t U + h_{t-1} W)``, ``y_t = softmax(h_t V)``, trained on the summed cross-entropy of every
step. The seed's backward pass ran forwards in time and skipped the last step, so no error ever flowed back
from a later step; here it runs from the last step to the first, carrying the hidden state's error back
through ``W`` (the test checks it against torch autograd). As in the seed, the start state ``h0`` is drawn
once and kept, and ``U``, ``W``, ``V`` are updated after each sequence.
"""

from __future__ import annotations

import numpy as np

WEIGHTS = ("U", "W", "V")


def initial(inputs: int, hidden: int, outputs: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The seed's start: every weight and the start state uniform on [0, 1)."""
    return {"U": rng.random((inputs, hidden)), "W": rng.random((hidden, hidden)),
            "V": rng.random((hidden, outputs)), "h0": rng.random(hidden)}


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def forward(params: dict[str, np.ndarray], xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hidden states (with ``h0`` first, so ``T + 1`` rows) and output probabilities (``T`` rows) of one sequence."""
    hs = [params["h0"]]
    for x in xs:
        hs.append(np.tanh(x @ params["U"] + hs[-1] @ params["W"]))
    hs = np.stack(hs)
    return hs, softmax(hs[1:] @ params["V"])


def loss_and_gradients(params: dict[str, np.ndarray], xs: np.ndarray,
                       targets: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    """The summed cross-entropy of one sequence (one-hot ``xs`` and ``targets``) and its gradients by BPTT."""
    hs, ys = forward(params, xs)
    loss = float(-np.sum(targets * np.log(ys)))
    grads = {name: np.zeros_like(params[name]) for name in WEIGHTS}
    carried = np.zeros_like(params["h0"])  # d loss / d h_t through the later steps
    for t in reversed(range(len(xs))):
        out_error = ys[t] - targets[t]  # softmax and cross-entropy together
        grads["V"] += np.outer(hs[t + 1], out_error)
        pre = (out_error @ params["V"].T + carried) * (1 - hs[t + 1] ** 2)
        grads["U"] += np.outer(xs[t], pre)
        grads["W"] += np.outer(hs[t], pre)
        carried = pre @ params["W"].T
    return loss, grads


def train(params: dict[str, np.ndarray], sequences: list[tuple[np.ndarray, np.ndarray]], learning_rate: float,
          steps: int) -> tuple[dict[str, np.ndarray], list[float]]:
    """The seed's loop: ``steps`` passes over the sequences, one update per sequence; the mean loss per step."""
    params = {name: value.copy() for name, value in params.items()}
    losses = []
    for _ in range(steps):
        total = 0.0
        for xs, targets in sequences:
            loss, grads = loss_and_gradients(params, xs, targets)
            for name in WEIGHTS:
                params[name] -= learning_rate * grads[name]
            total += loss / len(xs)
        losses.append(total / len(sequences))
    return params, losses
