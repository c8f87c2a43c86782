"""A tiny autograd engine in the spirit of seed 004 days 2-3: nodes, topological order, backprop, SGD.

``topological_sort`` orders every :class:`Node` after its inputs (refusing a cycle); ``forward``
computes values in that order and ``backward`` walks it in reverse, so each node has every
consumer's gradient before passing its own on; ``sgd`` updates the trainable placeholders.
Values are NumPy arrays, so one pass handles a batch. On purpose unlike the seed: a node with
several consumers *adds* their gradients (the seed kept the last), and the loss is a batch mean.
"""

from __future__ import annotations

import numpy as np


class GraphCycleError(ValueError):
    """The graph has a cycle, so no node order computes every input before its use."""


class Node:
    def __init__(self, *inputs: Node, name: str | None = None):
        self.inputs, self.outputs = list(inputs), []
        self.name = name or type(self).__name__
        self.value: np.ndarray | None = None
        self.gradients: dict[Node, np.ndarray] = {}  # d loss / d input, for each input (and for itself)
        for node in inputs:
            node.outputs.append(self)

    def upstream(self) -> np.ndarray:
        """d loss / d self: the sum over every consumer; 1 for the final (loss) node."""
        if not self.outputs:
            return np.ones_like(self.value)
        return sum(consumer.gradients[self] for consumer in self.outputs)

    def forward(self) -> None:
        raise NotImplementedError

    def backward(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class Placeholder(Node):
    """A value given from outside: the data, or a parameter when ``trainable``."""

    def __init__(self, value: np.ndarray | None = None, *, trainable: bool = False, name: str | None = None):
        super().__init__(name=name)
        self.value, self.trainable = value, trainable

    def forward(self) -> None:
        pass

    def backward(self) -> None:
        self.gradients[self] = self.upstream()


class Linear(Node):
    """x @ w + b for a batch x of shape (N, in), w (in, out), b (out,)."""

    def __init__(self, x: Node, w: Node, b: Node, name: str | None = None):
        super().__init__(x, w, b, name=name)

    def forward(self) -> None:
        x, w, b = (node.value for node in self.inputs)
        self.value = x @ w + b

    def backward(self) -> None:
        (x, w, b), grad = self.inputs, self.upstream()
        self.gradients = {x: grad @ w.value.T, w: x.value.T @ grad, b: grad.sum(axis=0)}


class Sigmoid(Node):
    def __init__(self, x: Node, name: str | None = None):
        super().__init__(x, name=name)

    def forward(self) -> None:
        self.value = 1.0 / (1.0 + np.exp(-self.inputs[0].value))

    def backward(self) -> None:
        self.gradients = {self.inputs[0]: self.upstream() * self.value * (1.0 - self.value)}


class MSE(Node):
    """mean((y − ŷ)²) over every element; y and ŷ have the same shape."""

    def __init__(self, y: Node, y_hat: Node, name: str | None = None):
        super().__init__(y, y_hat, name=name)

    def forward(self) -> None:
        y, y_hat = (node.value for node in self.inputs)
        if y.shape != y_hat.shape:
            raise ValueError(f"{self.name}: target shape {y.shape} differs from prediction shape {y_hat.shape}")
        self.diff = y - y_hat
        self.value = np.mean(self.diff**2)

    def backward(self) -> None:
        y, y_hat = self.inputs
        grad = self.upstream() * 2.0 * self.diff / self.diff.size
        self.gradients = {y: grad, y_hat: -grad}


def topological_sort(*ends: Node) -> list[Node]:
    """Every node the ``ends`` depend on, each after all of its inputs (Kahn's algorithm)."""
    nodes, stack = set(), list(ends)
    while stack:
        node = stack.pop()
        if node not in nodes:
            nodes.add(node)
            stack.extend(node.inputs)
    waiting = {node: len(set(node.inputs)) for node in nodes}
    ready = sorted((node for node, count in waiting.items() if count == 0), key=lambda n: n.name)
    order = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for consumer in dict.fromkeys(node.outputs):
            if consumer in waiting:
                waiting[consumer] -= 1
                if waiting[consumer] == 0:
                    ready.append(consumer)
    if len(order) != len(nodes):
        stuck = sorted(str(node) for node in nodes if node not in order)
        raise GraphCycleError(f"the graph has a cycle through: {', '.join(stuck)}")
    return order


def forward(graph: list[Node]) -> None:
    for node in graph:
        node.forward()


def backward(graph: list[Node]) -> None:
    for node in reversed(graph):
        node.backward()


def sgd(graph: list[Node], learning_rate: float) -> None:
    for node in graph:
        if isinstance(node, Placeholder) and node.trainable:
            node.value -= learning_rate * node.gradients[node]
