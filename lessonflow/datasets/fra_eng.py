"""French → English sentence pairs (001 §12): the PyTorch tutorial's ``eng-fra.txt``, or number phrases offline.

``official`` and ``mirror`` take the tutorial's ``data.zip`` (checked against the sha256 in
``datasets.fra-eng.options.sha256``) and read ``data/eng-fra.txt`` from it; ``embedded`` writes a file
of the same layout from ``num2words``: templated ages (« j'ai vingt et un ans. » → "I am twenty-one years
old.") whose English side passes the seed's filter. Every source is normalised and filtered as the seed
did, then whole groups are held out: a line's third field names its group (the embedded number), else
the French sentence does; a group is held out only while its words stay in the training pairs.
"""

from __future__ import annotations

import random
import re
import unicodedata
import zipfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from lessonflow.datasets import DatasetSpec, mirror_root, register
from lessonflow.datasets.fetch import copy_verified, download, verify

OFFICIAL_URLS = ["https://download.pytorch.org/tutorial/data.zip"]
# what pytorch/tutorials' CI pins for that URL (.jenkins/download_data.py); params.yaml pins it again
TUTORIAL_SHA256 = "fb317e80248faeb62dc25ef3390ae24ca34b94e276bbc5141fd8862c2200bff5"
ARCHIVE, MEMBER, TEXT = "data.zip", "data/eng-fra.txt", "eng-fra.txt"
MIRROR_FILE = "pytorch-tutorial/data.zip"
OPTIONS = {"sha256": TUTORIAL_SHA256, "max_length": 10, "test_fraction": 0.1, "split_seed": 0}
ENG_PREFIXES = ("i am ", "i m ", "he is", "he s ", "she is", "she s ", "you are", "you re ",
                "we are", "we re ", "they are", "they re ")
# (French, English) templates of an age: the English side starts with one of the seed's prefixes
AGES = [("J'ai {fr} ans.", "I am {en} years old."), ("Il a {fr} ans.", "He is {en} years old."),
        ("Elle a {fr} ans.", "She is {en} years old."), ("Tu as {fr} ans.", "You are {en} years old."),
        ("Nous avons {fr} ans.", "We are {en} years old."), ("Ils ont {fr} ans.", "They are {en} years old.")]
NUMBERS = range(2, 100)


def options(params: Any) -> dict[str, Any]:
    unknown = sorted(set(params.options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"datasets.fra-eng.options.{unknown[0]}: unknown option; allowed: {', '.join(OPTIONS)}")
    return {**OPTIONS, **params.options}


def number_phrases() -> str:
    """The embedded corpus in the tutorial's layout (English, tab, French), each line's number as its group."""
    from num2words import num2words

    lines = [f"{english.format(en=num2words(n, lang='en'))}\t{french.format(fr=num2words(n, lang='fr'))}\t{n}"
             for n in NUMBERS for french, english in AGES]
    return "\n".join(lines) + "\n"


def fetch(source: str, raw_dir: Path, params: Any) -> None:
    sha256 = options(params)["sha256"]
    if source == "embedded":
        (raw_dir / TEXT).write_text(number_phrases())
    elif source == "mirror":
        copy_verified(mirror_root() / MIRROR_FILE, raw_dir / ARCHIVE, sha256=sha256)
    else:
        download(params.urls or OFFICIAL_URLS, raw_dir / ARCHIVE, sha256=sha256)


def normalise(text: str) -> str:
    """The seed's normalizeString, its character class fixed: lower-case ASCII letters and . ! ? only."""
    text = "".join(c for c in unicodedata.normalize("NFD", text.lower().strip()) if unicodedata.category(c) != "Mn")
    text = re.sub(r"([.!?])", r" \1", text)
    return re.sub(r"[^a-zA-Z.!?]+", " ", text).strip()


def kept(french: str, english: str, max_length: int) -> bool:
    """The seed's filterPair: both sides under ``max_length`` words, the English one with a listed prefix."""
    return (len(french.split(" ")) < max_length and len(english.split(" ")) < max_length
            and english.startswith(ENG_PREFIXES))


def read_lines(source: str, raw_dir: Path, sha256: str) -> list[str]:
    if source == "embedded":
        return (raw_dir / TEXT).read_text(encoding="utf-8").strip().split("\n")
    archive = raw_dir / ARCHIVE
    verify(archive, sha256)
    with zipfile.ZipFile(archive) as bundle:
        if MEMBER not in bundle.namelist():
            raise ValueError(f"{archive}: no {MEMBER} inside; is it the PyTorch tutorial's data.zip?")
        return bundle.read(MEMBER).decode("utf-8").strip().split("\n")


def held_out(pairs: list[tuple[str, str, str]], fraction: float, seed: int) -> set[str]:
    """Groups to hold out: a seeded shuffle, each taken only if every word of it stays in the training pairs."""
    by_group: dict[str, Counter] = defaultdict(Counter)
    for french, english, group in pairs:
        by_group[group].update([f"fr:{word}" for word in french.split(" ")]
                               + [f"en:{word}" for word in english.split(" ")])
    left = Counter()  # each word's count in the pairs not held out yet
    for counts in by_group.values():
        left.update(counts)
    groups = sorted(by_group)
    random.Random(seed).shuffle(groups)
    chosen: set[str] = set()
    for group in groups:
        if len(chosen) == round(len(groups) * fraction):
            break
        if all(left[word] > count for word, count in by_group[group].items()):
            chosen.add(group)
            left.subtract(by_group[group])
    return chosen


def decode(source: str, raw_dir: Path, params: Any) -> dict[str, Any]:
    """French → English pairs, normalised and filtered as the seed did, split into training and held-out pairs."""
    settings = options(params)
    pairs = []
    for number, line in enumerate(read_lines(source, raw_dir, settings["sha256"]), 1):
        fields = line.split("\t")
        if len(fields) < 2:
            raise ValueError(f"{raw_dir}: line {number} has no tab between its English and French sentences")
        english, french = normalise(fields[0]), normalise(fields[1])
        if kept(french, english, settings["max_length"]):
            pairs.append((french, english, fields[2] if len(fields) > 2 else french))
    if not pairs:
        raise ValueError(f"{raw_dir}: no pair passes the seed's filter")
    test_groups = held_out(pairs, settings["test_fraction"], settings["split_seed"])
    return {"max_length": settings["max_length"],
            "train_pairs": [[fr, en] for fr, en, group in pairs if group not in test_groups],
            "test_pairs": [[fr, en] for fr, en, group in pairs if group in test_groups]}


register(DatasetSpec("fra-eng", ("embedded", "official", "mirror"), fetch, decode))
