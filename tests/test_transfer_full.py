"""The transfer lessons' full profile: ImageNet weights and Oxford-IIIT Pet's cats and dogs, fetched safely.

Neither the weights nor the photos can be downloaded here, so the tests make files in the same
layout (two tarballs of small JPEGs and annotation lists, state dicts in torchvision's file names)
and run the real mirror, download (``file://`` URLs) and checksum code on them. The architecture
check and freezing run on torchvision's real ResNet50 and VGG16 built with random weights, held in
memory: files of their real size (hundreds of megabytes) would make the tests slow.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import project_params

from lessonflow import dvcfile
from lessonflow.backbones import BackboneError
from lessonflow.contract import BACKBONE, Checkpoint
from lessonflow.datasets import catdog, download_dataset, prepare_dataset
from lessonflow.datasets.weights import TORCHVISION
from lessonflow.errors import ChecksumError, ParamsError
from lessonflow.kinds import transfer
from lessonflow.params import parse_params
from lessonflow.paths import Layout
from lessonflow.schema import DatasetParams
from stages.train import backbone_file

CPU = torch.device("cpu")
SPLITS = {"trainval": [("Abyssinian_1", 1), ("Bengal_2", 1), ("beagle_3", 2), ("pug_4", 2)],
          "test": [("Persian_5", 1), ("boxer_6", 2)]}  # (image id, species: 1 cat, 2 dog), as Oxford lists them


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tarball(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def jpeg(seed: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def fake_mirror(tmp_path) -> dict:
    """A mirror in the dataset's layout: oxford-iiit-pet/ with both tarballs, torchvision/ with both weights files."""
    mirror = tmp_path / "mirror"
    (mirror / catdog.MIRROR_FOLDER).mkdir(parents=True)
    (mirror / "torchvision").mkdir()
    ids = [image_id for rows in SPLITS.values() for image_id, _ in rows]
    tarball(mirror / catdog.MIRROR_FOLDER / "images.tar.gz",
            {f"images/{image_id}.jpg": jpeg(i) for i, image_id in enumerate(ids)})
    lists = {f"annotations/{split}.txt": "".join(f"{image_id} 1 {species} 1\n" for image_id, species in rows).encode()
             for split, rows in SPLITS.items()}
    tarball(mirror / catdog.MIRROR_FOLDER / "annotations.tar.gz", lists)
    for network, weights in TORCHVISION.items():  # any bytes: fetching does not open them
        torch.save({f"{weights.prefix}probe": torch.full((2,), float(len(network)))}, mirror / "torchvision" / weights.file)
    options = {"images_sha256": sha256(mirror / catdog.MIRROR_FOLDER / "images.tar.gz"),
               "annotations_sha256": sha256(mirror / catdog.MIRROR_FOLDER / "annotations.tar.gz"),
               "weights": {network: sha256(mirror / "torchvision" / weights.file)
                           for network, weights in TORCHVISION.items()}, "size": 16}
    return {"mirror": mirror, "options": options}


def test_the_mirror_gives_the_pinned_weights_and_cat_and_dog_photos(fake_mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("LESSONFLOW_DATA_MIRROR", str(fake_mirror["mirror"]))
    params = DatasetParams(options=fake_mirror["options"], val_fraction=0.25)
    assert download_dataset("catdog", params, "full", tmp_path / "raw") == "mirror"
    for weights in TORCHVISION.values():
        assert sha256(tmp_path / "raw" / weights.file) == sha256(fake_mirror["mirror"] / "torchvision" / weights.file)
    data = prepare_dataset("catdog", params, tmp_path / "raw", tmp_path / "catdog.pt")
    assert data["classes"] == ["cat", "dog"] and data["source"] == "mirror"
    assert data["x_test"].shape == (2, 3, 16, 16) and data["x_test"].dtype == torch.uint8
    assert data["y_test"].tolist() == [0, 1]
    assert sorted(torch.cat([data["y_train"], data["y_val"]]).tolist()) == [0, 0, 1, 1]


def test_official_downloads_every_file_from_the_folders_given(fake_mirror, tmp_path, monkeypatch):
    monkeypatch.delenv("LESSONFLOW_DATA_MIRROR", raising=False)
    served = tmp_path / "served"
    served.mkdir()
    for path in fake_mirror["mirror"].rglob("*.*"):
        (served / path.name).write_bytes(path.read_bytes())
    params = DatasetParams(urls=[served.as_uri() + "/"], options=fake_mirror["options"])
    assert download_dataset("catdog", params, "full", tmp_path / "raw") == "official"
    assert {path.name for path in (tmp_path / "raw").iterdir()} >= {
        "images.tar.gz", "annotations.tar.gz", *(weights.file for weights in TORCHVISION.values())}


@pytest.mark.parametrize("how", ["truncated", "wrong"])
@pytest.mark.parametrize(("name", "pin"), [("oxford-iiit-pet/images.tar.gz", ("images_sha256",)),
                                           ("torchvision/resnet50-0676ba61.pth", ("weights", "resnet50"))])
def test_a_bad_file_is_refused_naming_it_and_the_expected_hash(fake_mirror, tmp_path, monkeypatch, how, name, pin):
    monkeypatch.setenv("LESSONFLOW_DATA_MIRROR", str(fake_mirror["mirror"]))
    bad = fake_mirror["mirror"] / name
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if how == "truncated" else data[:-1] + bytes([data[-1] ^ 1]))
    expected = fake_mirror["options"][pin[0]] if len(pin) == 1 else fake_mirror["options"][pin[0]][pin[1]]
    with pytest.raises(ChecksumError, match=re.escape(str(bad)) + "(.|\n)*" + expected):
        download_dataset("catdog", DatasetParams(options=fake_mirror["options"]), "full", tmp_path / "raw")
    assert not (tmp_path / "raw").exists()  # nothing half-written


def test_a_missing_mirror_file_or_pin_is_named(fake_mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("LESSONFLOW_DATA_MIRROR", str(fake_mirror["mirror"]))
    unpinned = {**fake_mirror["options"], "annotations_sha256": None}
    with pytest.raises(ParamsError, match=r"datasets.catdog.options.annotations_sha256: pin the sha256 of "
                                          r"annotations.tar.gz"):
        download_dataset("catdog", DatasetParams(options=unpinned), "full", tmp_path / "raw")
    missing = fake_mirror["mirror"] / "torchvision" / TORCHVISION["vgg16"].file
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing)) + ": not found in the data mirror"):
        download_dataset("catdog", DatasetParams(options=fake_mirror["options"]), "full", tmp_path / "raw")


def full_lesson(lesson_id: str) -> transfer.TransferLesson:
    raw = {**project_params(), "profile": "full"}
    return parse_params(raw, lessons=[lesson_id]).lessons[lesson_id]


def test_on_the_full_profile_the_transfer_lessons_freeze_imagenet_weights_and_dvc_depends_on_them():
    params = parse_params({**project_params(), "profile": "full"})
    vgg, resnet = params.lessons["catdog-vgg16"], params.lessons["catdog-resnet50"]
    assert (vgg.dataset, vgg.weights, vgg.backbone, vgg.model.name) == ("catdog", "vgg16", None, "vgg16")
    assert (resnet.weights_file, resnet.model.name, resnet.classes) == ("resnet50-0676ba61.pth", "resnet50", [0, 1])
    assert vgg.normalize == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) and vgg.optimizer.lr == 1e-5
    stages = dvcfile.pipeline(params)
    assert stages["vars"][0][dvcfile.LESSON_ITEMS]["catdog-vgg16"] == {
        "dataset": "catdog", "kind": "transfer", "upstream": "data/raw/catdog/vgg16-397923af.pth"}
    assert "catdog" in stages["stages"]["download"]["foreach"]
    embedded = dvcfile.pipeline(parse_params(project_params()))
    assert embedded["vars"][0][dvcfile.LESSON_ITEMS]["catdog-vgg16"]["upstream"] == "models/cifar8-vgg"
    assert "catdog" not in embedded["stages"]["download"]["foreach"]  # the default build stays offline


def test_a_missing_weights_file_or_one_of_another_architecture_stops_with_one_line_naming_it(tmp_path):
    from torchvision.models import resnet50

    lesson = full_lesson("catdog-vgg16")
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "data/raw/catdog/vgg16-397923af.pth"))
                       + r": the backbone of lessons.catdog-vgg16 is missing; run `dvc repro download@catdog` first$"):
        backbone_file("catdog-vgg16", lesson, Layout(tmp_path))
    data = tiny_photos()
    data[BACKBONE] = resnet50().state_dict()  # ResNet50's file where VGG16's belongs
    with pytest.raises(BackboneError, match=r"^the ImageNet weights vgg16-397923af.pth: holds no backbone weights "
                                            r"\(no features.\* entries\)[^\n]*$"):
        transfer.train(quick(lesson), name="t", data=data, device=CPU, checkpoint=Checkpoint(tmp_path / "c", "", "t"))


def tiny_photos() -> dict:
    """Two classes of small noise images, one brighter: enough for one epoch of the real networks."""
    g = torch.Generator().manual_seed(0)
    x = {split: torch.randint(0, 128, (n, 3, 32, 32), generator=g, dtype=torch.uint8) for split, n in
         (("train", 4), ("val", 2), ("test", 2))}
    y = {split: torch.arange(len(x[split])) % 2 for split in x}
    for split in x:
        x[split][y[split] == 1] += 120
    return {"dataset": "catdog", "source": "mirror", "classes": ["cat", "dog"],
            **{f"x_{split}": value for split, value in x.items()}, **{f"y_{split}": value for split, value in y.items()}}


def quick(lesson: transfer.TransferLesson) -> transfer.TransferLesson:
    return lesson.model_copy(update={"epochs": 1, "batch_size": 4, "train_images": 2})


def test_imagenet_resnet50_weights_are_loaded_frozen_and_unchanged_by_training(tmp_path):
    from torchvision.models import resnet50

    torch.manual_seed(0)
    imagenet = resnet50().state_dict()  # torchvision's layout and shapes, random values
    kept = {key: value.clone() for key, value in imagenet.items()}
    data = {**tiny_photos(), BACKBONE: imagenet}
    lesson = quick(full_lesson("catdog-resnet50"))
    trained = transfer.train(lesson, name="t", data=data, device=CPU, checkpoint=Checkpoint(tmp_path / "c", "", "t"))
    saved = trained.states["model"]
    backbone = {key: value for key, value in kept.items() if not key.startswith("fc.")}
    assert all(torch.equal(saved[f"features.{key}"], value) for key, value in backbone.items())  # frozen, stats too
    assert saved["fc.weight"].shape == (2, 2048) and trained.summary["backbone"] == "resnet50-0676ba61.pth"
    assert trained.summary["trainable_parameters"] == 2048 * 2 + 2
    assert all(torch.equal(imagenet[key], kept[key]) for key in kept)  # the file's weights themselves untouched


def test_switching_the_profile_rewrites_dvc_yaml_for_it(tmp_path):
    import logging

    from conftest import copy_project, run

    from flows.pipeline import _set_profile
    from lessonflow.params import load_params

    repo = copy_project(tmp_path / "project")
    run(repo, "lessonflow", "dvc-yaml", "--profile", "full")  # what `make run PROFILE=full` does before `dvc exp run`
    assert "upstream: data/raw/catdog/vgg16-397923af.pth" in (repo / "dvc.yaml").read_text()
    assert "the profile switched" in dvcfile.stale(Layout(repo), load_params(repo / "params.yaml"))  # still embedded
    _set_profile(repo, "full", logging.getLogger("test"))  # the flow's --profile
    assert dvcfile.stale(Layout(repo), load_params(repo / "params.yaml")) is None
    _set_profile(repo, "embedded", logging.getLogger("test"))
    assert "upstream: models/cifar8-vgg" in (repo / "dvc.yaml").read_text()
