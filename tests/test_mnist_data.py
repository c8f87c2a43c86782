"""MNIST from each source: the embedded digits, and the real files from the mirror."""

from __future__ import annotations

import os

import pytest
import torch

from lessonflow.datasets import download_dataset, prepare_dataset, resolve_source
from lessonflow.params import DatasetParams


def build(tmp_path, source: str) -> dict:
    raw, prepared = tmp_path / "raw" / "mnist", tmp_path / "prepared" / "mnist.pt"
    used = download_dataset("mnist", DatasetParams(source=source), "full", raw)
    assert used == source and (raw / "SOURCE.json").is_file()
    return prepare_dataset("mnist", DatasetParams(source=source), raw, prepared)


def test_embedded_digits_look_like_mnist(tmp_path):
    data = build(tmp_path, "embedded")
    assert data["x_train"].dtype == torch.uint8 and data["x_train"].shape[1:] == (1, 28, 28)
    assert data["x_train"][:, :, :4].max() == 0, "the digit sits in MNIST's 20x20 box with a 4-pixel border"
    assert data["x_train"].max() == 255
    total = sum(len(data[f"y_{split}"]) for split in ("train", "val", "test"))
    assert total == 1797 and len(data["y_test"]) == 360
    assert sorted(data["y_test"].unique().tolist()) == list(range(10))
    again = build(tmp_path / "again", "embedded")
    assert torch.equal(again["x_test"], data["x_test"]) and torch.equal(again["y_val"], data["y_val"])


def test_the_mirror_gives_the_real_60000_and_10000_digits(tmp_path, mirror, monkeypatch):
    monkeypatch.setenv("LESSONFLOW_DATA_MIRROR", str(mirror))
    data = build(tmp_path, "mirror")
    assert data["source"] == "mirror"
    assert len(data["y_train"]) + len(data["y_val"]) == 60_000 and len(data["y_val"]) == 6_000
    assert len(data["y_test"]) == 10_000 and data["x_test"].shape[1:] == (1, 28, 28)
    assert torch.bincount(data["y_test"]).tolist()[:3] == [980, 1135, 1032]  # the published class counts


def test_profile_decides_the_source_of_auto(monkeypatch):
    monkeypatch.delenv("LESSONFLOW_DATA_MIRROR", raising=False)
    assert resolve_source("auto", "embedded") == "embedded"
    assert resolve_source("auto", "full") == "official"
    monkeypatch.setenv("LESSONFLOW_DATA_MIRROR", os.getcwd())
    assert resolve_source("auto", "full") == "mirror"
    assert resolve_source("official", "full") == "official"


def test_mirror_source_without_a_mirror_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("LESSONFLOW_DATA_MIRROR", raising=False)
    with pytest.raises(RuntimeError, match="LESSONFLOW_DATA_MIRROR"):
        build(tmp_path, "mirror")
    assert not (tmp_path / "raw" / "mnist").exists()
