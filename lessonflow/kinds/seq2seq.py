"""The ``seq2seq`` lesson kind: French → English translation with an attention decoder (001 §12).

The seed's training as it wrote it: one randomly drawn pair per iteration, plain SGD on the summed
NLL of the target words, the decoder fed the true previous word on a random share of the iterations
(teacher forcing) and its own guess on the rest. Fixed from the seed: it scored nothing it had not
trained on; here the held-out pairs (whole numbers on the embedded data) are translated greedily in
eval mode and scored by BLEU (sacrebleu) and exact match. Vocabularies come from the training pairs,
which the dataset's split guarantees cover every held-out word.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
from pydantic import Field, model_validator

from lessonflow.contract import Checkpoint, Evaluated, Prepared, Saved, Trained
from lessonflow.figures import heat_map, text_table
from lessonflow.records import carried_facts
from lessonflow.schema import LessonBase, ModelParams, ParamsError, Strict, on_sample_data
from lessonflow.zoo import EOS, SOS, build_model, require_model, restored

SAMPLE_SOURCES = ("embedded",)
SHOWN = 12  # held-out translations drawn in the report
T = TypeVar("T")


class SampleBudget(Strict):
    """Settings that replace the seed's on the embedded number phrases."""

    iterations: int | None = Field(None, gt=0)
    learning_rate: float | None = Field(None, gt=0)


class Seq2SeqLesson(LessonBase):
    model: ModelParams
    learning_rate: float = Field(0.01, gt=0)
    iterations: int = Field(gt=0)
    teacher_forcing: float = Field(0.5, ge=0, le=1)
    record_every: int = Field(100, gt=0)  # iterations per point of the loss curve (the seed's plot_every)
    embedded: SampleBudget | None = None

    @model_validator(mode="after")
    def _translation_model(self) -> Seq2SeqLesson:
        require_model(self.model, "attention_seq2seq", "a translation lesson")
        return self

    def for_source(self, data_source: str) -> Seq2SeqLesson:
        return on_sample_data(self, data_source, SAMPLE_SOURCES)


Lesson = Seq2SeqLesson


def vocabulary(sentences: list[str]) -> list[str]:
    """``SOS``, ``EOS``, then every word in order of first appearance, as the seed's ``Lang`` counts them."""
    return list(dict.fromkeys(["<SOS>", "<EOS>", *(word for sentence in sentences for word in sentence.split(" "))]))


def indices(sentence: str, words: list[str], device: torch.device) -> torch.Tensor:
    index = {word: i for i, word in enumerate(words)}
    return torch.tensor([index[word] for word in sentence.split(" ")] + [EOS], device=device)


def translation_model(lesson: Seq2SeqLesson, source_words: int, target_words: int) -> torch.nn.Module:
    return build_model(lesson.model.name, lesson.model.kwargs(), in_shape=(source_words,), num_classes=target_words)


def pair_loss(model: torch.nn.Module, source: torch.Tensor, target: torch.Tensor, forced: bool) -> torch.Tensor:
    """The seed's ``train``: summed NLL of the target words, fed the truth (``forced``) or its own guesses."""
    encoded, hidden = model.encode(source)
    word, loss = torch.tensor([SOS], device=source.device), 0.0
    for truth in target:
        log_probs, hidden, _ = model.step(word, hidden, encoded)
        loss = loss + torch.nn.functional.nll_loss(log_probs, truth.view(1))
        word = truth.view(1) if forced else log_probs.argmax(1).detach()
        if not forced and int(word) == EOS:
            break
    return loss


def on_one_thread(function: Callable[..., T]) -> Callable[..., T]:
    """One pair's ops are too small to share: a second CPU thread only waits at each op's barrier, and on a
    busy machine (BENCHMARKS.md) it waits for a core, so the lesson computes on one and gives the rest back."""
    @functools.wraps(function)
    def wrapped(*args, **kwargs) -> T:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return function(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)
    return wrapped


@on_one_thread
def train(lesson: Seq2SeqLesson, *, name: str, data: Prepared, device: torch.device,
          checkpoint: Checkpoint) -> Trained:
    """``iterations`` single-pair SGD steps on pairs drawn with the lesson's seed."""
    pairs = data["train_pairs"]
    source_words, target_words = vocabulary([fr for fr, _ in pairs]), vocabulary([en for _, en in pairs])
    longest = max(len(sentence.split(" ")) + 1 for pair in pairs for sentence in pair)
    if longest > lesson.model.kwargs().get("max_length", 10):
        raise ParamsError(f"model.max_length: a training sentence has {longest} words with its end mark; "
                          f"set it to at least {longest}")
    model = translation_model(lesson, len(source_words), len(target_words)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lesson.learning_rate)
    draw = random.Random(lesson.seed)
    tensors = [(indices(fr, source_words, device), indices(en, target_words, device)) for fr, en in pairs]
    history, running = [], 0.0
    started = time.perf_counter()
    model.train()
    for iteration in range(1, lesson.iterations + 1):
        source, target = draw.choice(tensors)
        loss = pair_loss(model, source, target, draw.random() < lesson.teacher_forcing)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running += loss.item() / len(target)
        if iteration % lesson.record_every == 0:
            history.append({"loss": running / lesson.record_every})
            running = 0.0
    seconds = time.perf_counter() - started
    return Trained(states={"model": {k: v.cpu() for k, v in model.state_dict().items()},
                           "vocabulary": {"source": source_words, "target": target_words}},
                   seconds=seconds, device=device.type, network=model,
                   summary={"iterations": lesson.iterations, "train_pairs": len(pairs),
                            "final_loss": history[-1]["loss"] if history else None},
                   history=history, curves={"loss": "train/loss"})


def translate(model: torch.nn.Module, sentence: str, vocab: dict[str, list[str]],
              device: torch.device) -> tuple[list[str], np.ndarray]:
    """The model's words for one sentence (``<EOS>`` last when it ended) and its attention per output word."""
    with torch.no_grad():
        words, attention = model(indices(sentence, vocab["source"], device))
    return [vocab["target"][word] for word in words], attention.cpu().numpy()


@on_one_thread
def evaluate(lesson: Seq2SeqLesson, *, name: str, data: Prepared, device: torch.device, saved: Saved) -> Evaluated:
    """BLEU and exact match on the held-out pairs, some of them beside the truth, and one attention map."""
    import sacrebleu

    vocab = saved.states["vocabulary"]
    model = restored(translation_model(lesson, len(vocab["source"]), len(vocab["target"])),
                     saved.states["model"], device).eval()
    pairs = data["test_pairs"]
    outputs = [translate(model, fr, vocab, device) for fr, _ in pairs]
    guesses = [" ".join(word for word in words if word != "<EOS>") for words, _ in outputs]
    truths = [en for _, en in pairs]
    metrics = {"test_bleu": round(sacrebleu.corpus_bleu(guesses, [truths]).score, 4),
               "test_exact_match": float(np.mean([g == t for g, t in zip(guesses, truths)])),
               "test_pairs": len(pairs), "train_pairs": saved.metrics["train_pairs"],
               "final_loss": saved.metrics["final_loss"], "iterations": saved.metrics["iterations"],
               **carried_facts(saved.metrics)}
    shown = list(zip(pairs, guesses))[::max(1, len(pairs) // SHOWN)][:SHOWN]  # spread over the held-out groups
    rows = [[fr, en, guess, "yes" if guess == en else "no"] for (fr, en), guess in shown]
    (source, _), (words, attention) = pairs[0], outputs[0]
    columns = source.split(" ") + ["<EOS>"]
    images = {
        "held_out_translations.png": text_table(rows, ["French (held out)", "English (truth)", "model", "exact"],
                                                f"{name}: held-out translations"),
        "attention.png": heat_map(attention[:, :len(columns)], words, columns,
                                  f"{name}: attention, {source!r}", "French word", "English word"),
    }
    return Evaluated(metrics, images=images,  # kept in eval/outputs: every held-out translation beside its truth
                     arrays={"translations.npz": {"french": np.array([fr for fr, _ in pairs], dtype=str),
                                                  "english": np.array(truths, dtype=str),
                                                  "model": np.array(guesses, dtype=str)}})
