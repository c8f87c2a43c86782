"""The style-transfer lesson: Gatys' method learns on a tiny photo pair, and its inputs are fetched safely.

No ImageNet weights nor the seed's photos can be downloaded here, so the tests make files in the
same layout (a VGG16 state dict with the real first filters' shapes, two JPEGs) and run the real
mirror, download (a ``file://`` URL) and checksum code on them; the end-to-end test runs real DVC.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import copy_project, dvc, project_params, read_json

from lessonflow.contract import Checkpoint, Saved
from lessonflow.datasets import download_dataset, prepare_dataset
from lessonflow.datasets import images as photos
from lessonflow.errors import ChecksumError, ParamsError
from lessonflow.kinds import style_transfer
from lessonflow.schema import DatasetParams
from lessonflow.records import run_facts

CPU = torch.device("cpu")
UNUSED = Checkpoint(Path("never-written.pt"), "", "")  # the kind keeps no checkpoint


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tiny_lesson(**settings) -> style_transfer.StyleTransferLesson:
    return style_transfer.Lesson.model_validate({"kind": "style_transfer", "dataset": "images", **settings})


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> dict:
    """The embedded photos as prepare leaves them (scikit-learn's china.jpg and flower.jpg, no weights)."""
    root = tmp_path_factory.mktemp("images")
    download_dataset("images", DatasetParams(), "embedded", root / "raw")
    return prepare_dataset("images", DatasetParams(), root / "raw", root / "images.pt")


def test_the_embedded_photos_are_scikit_learns_with_random_filters_said(embedded):
    assert embedded["source"] == "embedded" and embedded["weights"] == {}
    assert embedded["content"].shape == (3, 427, 640) and embedded["content"].dtype == torch.uint8
    assert embedded["names"] == {"content": "china.jpg", "style": "flower.jpg"}
    assert "CC BY 2.0" in embedded["credits"] and "random VGG16" in embedded["extractor"]


def test_gatys_lowers_the_style_loss_while_the_result_stays_near_the_content(embedded):
    shipped = style_transfer.Lesson.model_validate(project_params()["lessons"]["style-transfer"])
    lesson = shipped.for_source("embedded").model_copy(update={"size": 32, "closure_calls": 30})
    trained = style_transfer.train(lesson, name="tiny", data=embedded, device=CPU, checkpoint=UNUSED)
    saved = Saved(trained.states, {**run_facts(trained.seconds, "cpu", "embedded", 0), **trained.summary})
    result = style_transfer.evaluate(lesson, name="tiny", data=embedded, device=CPU, saved=saved)
    metrics = result.metrics
    assert metrics["style_loss_reduction"] >= 5  # measured 12.7 (BENCHMARKS.md, "Style transfer")
    # near the content: a quarter of the content loss a result that forgot it would have (measured 0.25)
    assert metrics["content_loss_final"] <= 0.5 * metrics["content_loss_of_style_photo"]
    assert metrics["pixel_change"] <= 0.3  # mean |result - content| of pixels in [0, 1]; measured 0.20
    assert metrics["style_loss_start"] == pytest.approx(trained.history[0]["style_loss"], rel=1e-4)
    assert set(result.images) == {"side_by_side.png", "result.png"} and trained.curves == style_transfer.CURVES
    assert result.arrays["result.npz"]["image"].shape == (3, 32, 32)


def test_the_result_is_the_same_bits_whatever_threads_the_caller_has(embedded):
    lesson = tiny_lesson(size=64, closure_calls=10)
    images = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            trained = style_transfer.train(lesson, name="tiny", data=embedded, device=CPU, checkpoint=UNUSED)
            assert torch.get_num_threads() == threads  # the caller's setting is left as it was
            images.append(trained.states["model"]["image"])
    finally:
        torch.set_num_threads(before)
    assert torch.equal(*images)


@pytest.fixture
def fake_inputs(tmp_path) -> dict:
    """A mirror in the lesson's layout: a VGG16 state dict (first filters only, the real shapes) and two JPEGs."""
    from PIL import Image

    mirror = tmp_path / "mirror"
    (mirror / "torchvision").mkdir(parents=True)
    (mirror / "style-transfer").mkdir()
    generator = torch.Generator().manual_seed(1)
    state = {f"features.{i}.{part}": torch.randn(shape if part == "weight" else shape[:1], generator=generator)
             for i, shape in photos.SHAPES.items() for part in ("weight", "bias")}
    torch.save(state, mirror / photos.MIRROR_WEIGHTS)
    rng = np.random.default_rng(0)
    for role, name in photos.MIRROR_IMAGES.items():
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(mirror / name)
    options = {"weights_sha256": sha256(mirror / photos.MIRROR_WEIGHTS),
               **{f"{role}_sha256": sha256(mirror / name) for role, name in photos.MIRROR_IMAGES.items()}}
    return {"mirror": mirror, "options": options, "state": state}


def test_the_mirror_gives_the_pinned_weights_and_photos_and_the_lesson_uses_them(fake_inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("LESSONFLOW_DATA_MIRROR", str(fake_inputs["mirror"]))
    params = DatasetParams(options=fake_inputs["options"])
    assert download_dataset("images", params, "full", tmp_path / "raw") == "mirror"
    data = prepare_dataset("images", params, tmp_path / "raw", tmp_path / "images.pt")
    assert data["names"] == {"content": "stata.jpg", "style": "wave.jpg"} and data["content"].shape == (3, 40, 60)
    assert set(data["weights"]) == {f"{i}.{part}" for i in photos.KEPT_LAYERS for part in ("weight", "bias")}
    features = style_transfer.extractor(data, seed=0)
    assert torch.equal(features[5].weight, fake_inputs["state"]["features.5.weight"])
    assert "ImageNet VGG16" in data["extractor"]


@pytest.mark.parametrize("how", ["truncated", "wrong"])
@pytest.mark.parametrize(("name", "pin"), [(photos.MIRROR_WEIGHTS, "weights_sha256"),
                                           (photos.MIRROR_IMAGES["style"], "style_sha256")])
def test_a_bad_file_is_refused_naming_it_and_the_expected_hash(fake_inputs, tmp_path, monkeypatch, how, name, pin):
    monkeypatch.setenv("LESSONFLOW_DATA_MIRROR", str(fake_inputs["mirror"]))
    bad = fake_inputs["mirror"] / name
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if how == "truncated" else data[:-1] + bytes([data[-1] ^ 1]))
    expected = fake_inputs["options"][pin]
    with pytest.raises(ChecksumError, match=re.escape(str(bad)) + "(.|\n)*" + expected):
        download_dataset("images", DatasetParams(options=fake_inputs["options"]), "full", tmp_path / "raw")
    assert not (tmp_path / "raw").exists()  # nothing half-written


def test_a_missing_mirror_photo_names_the_path_looked_for(fake_inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("LESSONFLOW_DATA_MIRROR", str(fake_inputs["mirror"]))
    (fake_inputs["mirror"] / "style-transfer/wave.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(fake_inputs["mirror"] / "style-transfer/wave.jpg"))):
        download_dataset("images", DatasetParams(options=fake_inputs["options"]), "full", tmp_path / "raw")


def test_official_downloads_the_weights_and_takes_the_photos_from_the_paths_given(fake_inputs, tmp_path, monkeypatch):
    monkeypatch.delenv("LESSONFLOW_DATA_MIRROR", raising=False)  # a user's machine: no mirror, the URL is used
    mirror, options = fake_inputs["mirror"], dict(fake_inputs["options"])
    options.update(content=str(mirror / "style-transfer/stata.jpg"), style=str(mirror / "style-transfer/wave.jpg"))
    params = DatasetParams(urls=[(mirror / photos.MIRROR_WEIGHTS).as_uri()], options=options)
    assert download_dataset("images", params, "full", tmp_path / "raw") == "official"
    assert sha256(tmp_path / "raw" / photos.WEIGHTS_FILE) == options["weights_sha256"]
    data = prepare_dataset("images", params, tmp_path / "raw", tmp_path / "images.pt")
    assert data["source"] == "official" and data["style"].shape == (3, 40, 60)


def test_an_unpinned_photo_or_a_file_of_another_model_is_refused_naming_the_key_or_file(fake_inputs, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setenv("LESSONFLOW_DATA_MIRROR", str(fake_inputs["mirror"]))
    unpinned = {**fake_inputs["options"], "style_sha256": None}
    with pytest.raises(ParamsError, match="datasets.images.options.style_sha256: pin the sha256"):
        download_dataset("images", DatasetParams(options=unpinned), "full", tmp_path / "raw")
    weights = fake_inputs["mirror"] / photos.MIRROR_WEIGHTS
    torch.save({"fc.weight": torch.zeros(2, 2)}, weights)  # another architecture, correctly pinned
    options = {**fake_inputs["options"], "weights_sha256": sha256(weights)}
    download_dataset("images", DatasetParams(options=options), "full", tmp_path / "raw")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "raw" / photos.WEIGHTS_FILE))
                       + ": not a torchvision VGG16 state dict"):
        prepare_dataset("images", DatasetParams(options=options), tmp_path / "raw", tmp_path / "images.pt")


@pytest.mark.long  # the embedded lesson and the report through real DVC
def test_dvc_builds_the_lesson_and_the_report_shows_its_pictures_and_curves(tmp_path):
    repo = copy_project(tmp_path / "project")
    dvc(repo, "repro", "evaluate@style-transfer")
    dvc(repo, "repro", "--single-item", "report")
    metrics = read_json(repo / "results/style-transfer/eval/metrics.json")
    assert metrics["data_source"] == "embedded" and metrics["style_loss_reduction"] > 1
    assert metrics["content_image"] == "china.jpg" and "random VGG16" in metrics["features"]
    assert "CC BY 2.0" in metrics["image_credits"]
    section = (repo / "reports/report.md").read_text().split("### style-transfer")[1]
    assert "eval-side_by_side.png" in section and "eval-result.png" in section and "curves.png" in section
    curves = {path.stem for path in (repo / "results/style-transfer/train/plots/metrics/train").glob("*.tsv")}
    assert curves == {"style_loss", "content_loss"}
    assert read_json(repo / "results/style-transfer/train/metrics.json")["closure_calls"] >= 60  # the embedded budget
    card = (repo / "reports/cards/style-transfer.md").read_text()
    assert "random VGG16 filters, not ImageNet's" in card and "001 §8" in card
