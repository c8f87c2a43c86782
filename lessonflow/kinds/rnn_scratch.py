"""The ``rnn_scratch`` lesson kind: the book's 9-10-9 NumPy RNN learning which letter comes next (001 §9.2).

The seed's character pairs ("abc" → "bcd" …) are short enough to live in params.yaml, as they lived in
its code; the network and its hand-written BPTT are :mod:`lessonflow.scratch.rnn`. Its questions, the
letters after ``c`` and after ``fg``, are the ``queries`` with the answers it expected, and the metrics
say what it answered. Fixed from the seed: the ``RNNTTest`` typo, ``np.int`` (gone from NumPy) and the
backward pass (see the RNN module).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from pydantic import Field, model_validator

from lessonflow.contract import Checkpoint, Evaluated, Prepared, Saved, Trained
from lessonflow.figures import heat_map
from lessonflow.records import carried_facts
from lessonflow.schema import LessonBase, ParamsError
from lessonflow.scratch import rnn

CURVE_POINTS = 100


class RnnLesson(LessonBase):
    alphabet: str = Field("abcdefghi", min_length=2)
    sequences: dict[str, str] = Field(min_length=1)  # input -> the same letters one step on
    queries: dict[str, str] = Field(default_factory=dict)  # input -> the letter the seed expected after it
    hidden: int = Field(10, gt=0)
    learning_rate: float = Field(0.1, gt=0)
    steps: int = Field(500, gt=0)

    @model_validator(mode="after")
    def _letters_of_the_alphabet(self) -> RnnLesson:
        for key, pairs in (("sequences", self.sequences), ("queries", self.queries)):
            for text, target in pairs.items():
                stray = sorted(set(text + target) - set(self.alphabet))
                if stray:
                    raise ParamsError(f"{key}: {text!r} -> {target!r} uses {', '.join(stray)}, not in alphabet "
                                      f"{self.alphabet!r}")
                if key == "sequences" and len(text) != len(target):
                    raise ParamsError(f"sequences: {text!r} -> {target!r}: a target needs one letter per input letter")
                if key == "queries" and (not text or len(target) != 1):
                    raise ParamsError(f"queries: {text!r} -> {target!r}: a query is letters -> the letter after them")
        return self


Lesson = RnnLesson


def one_hot(text: str, alphabet: str) -> np.ndarray:
    return np.eye(len(alphabet))[[alphabet.index(letter) for letter in text]]


def weights_of(saved: Saved) -> dict[str, np.ndarray]:
    return {name: value.numpy() for name, value in saved.states["model"].items()}


def train(lesson: RnnLesson, *, name: str, data: Prepared, device: torch.device, checkpoint: Checkpoint) -> Trained:
    """The seed's loop on its pairs, from its uniform start, seeded."""
    size = len(lesson.alphabet)
    sequences = [(one_hot(text, lesson.alphabet), one_hot(target, lesson.alphabet))
                 for text, target in lesson.sequences.items()]
    started = time.perf_counter()
    weights, losses = rnn.train(rnn.initial(size, lesson.hidden, size, np.random.default_rng(lesson.seed)),
                                sequences, lesson.learning_rate, lesson.steps)
    seconds = time.perf_counter() - started
    every = max(1, lesson.steps // CURVE_POINTS)
    return Trained(states={"model": {key: torch.from_numpy(value) for key, value in weights.items()}},
                   seconds=seconds, device="cpu", summary={"steps": lesson.steps, "final_loss": losses[-1]},
                   history=[{"loss": loss} for loss in losses[::every]], curves={"loss": "train/loss"})


def evaluate(lesson: RnnLesson, *, name: str, data: Prepared, device: torch.device, saved: Saved) -> Evaluated:
    """How many next letters of the training pairs it gets right, and its answers to the seed's questions."""
    weights = weights_of(saved)
    right = total = 0
    for text, target in lesson.sequences.items():
        _, probabilities = rnn.forward(weights, one_hot(text, lesson.alphabet))
        right += sum(lesson.alphabet[i] == letter for i, letter in zip(probabilities.argmax(axis=1), target))
        total += len(target)
    metrics = {"next_char_accuracy": right / total, "final_loss": saved.metrics["final_loss"]}
    answers = {}
    for text, expected in lesson.queries.items():
        _, probabilities = rnn.forward(weights, one_hot(text, lesson.alphabet))
        answers[text] = probabilities[-1]
        metrics[f"next_after_{text}"] = lesson.alphabet[int(probabilities[-1].argmax())]
    if lesson.queries:
        metrics["query_accuracy"] = float(np.mean([metrics[f"next_after_{text}"] == expected
                                                   for text, expected in lesson.queries.items()]))
    metrics.update(steps=saved.metrics["steps"], **carried_facts(saved.metrics))
    images = {}
    if answers:
        images["next_letter.png"] = heat_map(np.stack(list(answers.values())), [f"after {t!r}" for t in answers],
                                             list(lesson.alphabet), f"{name}: probability of each next letter",
                                             "next letter", "input")
    probabilities = np.stack(list(answers.values())) if answers else np.zeros((0, len(lesson.alphabet)))
    return Evaluated(metrics, images=images,  # kept in eval/outputs: the answers behind the metrics and the picture
                     arrays={"answers.npz": {"queries": np.array(list(answers), dtype=str), "probabilities": probabilities}})
