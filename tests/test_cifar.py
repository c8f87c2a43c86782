"""CIFAR-10 from every source, the training-only augmentation, and the cifar-resnet lesson."""

from __future__ import annotations

import functools
import hashlib
import io
import os
import pickle
import tarfile
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tenacity.nap
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import killed_after_checkpoint, project_params
from lessonflow.contract import Checkpoint
from lessonflow.datasets import cifar, download_dataset, prepare_dataset
from lessonflow.datasets.fetch import ChecksumError, DownloadError
from lessonflow.params import DatasetParams, parse_params
from lessonflow.paths import Layout
from lessonflow.runtime import make_deterministic
from lessonflow.schema import Augmentation
from lessonflow.training import TrainConfig, augment_batch, predict_logits, score, to_inputs, train_classifier
from lessonflow.zoo import BasicBlock, build_model
from stages.evaluate import evaluate as evaluate_stage
from stages.train import train as train_stage

CPU = torch.device("cpu")


def build(tmp_path: Path, **dataset) -> dict:
    """download + prepare, exactly as the two DVC stages run them."""
    params = DatasetParams(**dataset)
    raw, prepared = tmp_path / "raw" / "cifar", tmp_path / "prepared" / "cifar.pt"
    download_dataset("cifar", params, "full", raw)
    return prepare_dataset("cifar", params, raw, prepared)


def fit(model, data, cfg, tmp_path, name="run"):
    return train_classifier(model, data, cfg, device=CPU, checkpoint=Checkpoint(tmp_path / f"{name}.pt", "f", name),
                            progress=False)


# --- embedded: the synthetic stand-in -----------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict:
    return build(tmp_path_factory.mktemp("synthetic"), source="embedded")


def test_synthetic_set_is_deterministic_balanced_and_says_it_is_synthetic(synthetic, tmp_path):
    assert synthetic["source"] == "synthetic"
    assert synthetic["x_train"].dtype == torch.uint8 and synthetic["x_train"].shape[1:] == (3, 32, 32)
    assert len(synthetic["y_train"]) + len(synthetic["y_val"]) == cifar.SYNTHETIC_TRAIN
    assert torch.bincount(synthetic["y_test"]).tolist() == [cifar.SYNTHETIC_TEST // 10] * 10
    assert len(synthetic["classes"]) == 10 and synthetic["x_train"].float().std() > 40  # colourful, not flat
    again = build(tmp_path, source="embedded")
    for key in ("x_train", "y_train", "x_val", "x_test", "y_test"):
        assert torch.equal(again[key], synthetic[key]), key


def test_synthetic_classes_are_learnable(synthetic, tmp_path):
    make_deterministic(0)
    model = build_model("cnn", {"channels": [8, 16], "kernel": 3, "padding": 1, "head": [32]},
                        in_shape=(3, 32, 32), num_classes=10)
    history = fit(model, synthetic, TrainConfig(epochs=3, batch_size=50, optimizer="adam", lr=0.005), tmp_path)
    _, accuracy = score(model, synthetic["x_test"], synthetic["y_test"], None, CPU)
    assert accuracy > 0.5, f"test accuracy {accuracy} after {len(history.epochs)} epochs; chance is 0.1"


# --- mirror: the JPEG zip -----------------------------------------------------------------------

def test_mirror_gives_the_real_50000_and_10000_images(tmp_path, mirror, monkeypatch):
    monkeypatch.setenv("LESSONFLOW_DATA_MIRROR", str(mirror))
    data = build(tmp_path, source="mirror")
    assert data["source"] == "mirror" and data["classes"] == cifar.CLASSES
    assert len(data["y_train"]) + len(data["y_val"]) == 50_000 and len(data["y_val"]) == 5_000
    assert data["x_test"].shape == (10_000, 3, 32, 32) and data["x_test"].dtype == torch.uint8
    assert torch.bincount(data["y_test"]).tolist() == [1000] * 10
    # CIFAR-10's published per-channel means: decoding kept the pixels and the RGB order
    means = torch.cat([data["x_train"], data["x_val"]]).float().mean((0, 2, 3)) / 255
    assert torch.allclose(means, torch.tensor([0.4914, 0.4822, 0.4465]), atol=0.01), means


def jpeg(height: int = 32, width: int = 32, value: int = 0) -> bytes:
    image = np.full((height, width, 3), value, dtype=np.uint8)
    image[: height // 2, :, 0] = 255  # red top half: an orientation and channel check
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=95)
    return out.getvalue()


def image_zip(path: Path, *, skip: str | None = None, replace: dict[str, bytes] | None = None) -> Path:
    """A tiny zip in the mirror's layout: two images per class and split (class index as grey level)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for split in ("train", "test"):
            for label, cls in enumerate(cifar.CLASSES):
                for i in range(2):
                    name = f"{split}/{cls}/{i:04d}.jpg"
                    if name.startswith(skip or "\0"):
                        continue
                    archive.writestr(name, (replace or {}).get(name, jpeg(value=20 * label)))
    return path


def test_jpeg_zip_decodes_in_class_order_and_keeps_colours(tmp_path):
    splits = cifar.read_jpeg_zip(image_zip(tmp_path / "ok.zip"))
    assert splits.x_train.shape == (20, 3, 32, 32) and splits.y_test.tolist() == [c for c in range(10) for _ in "ab"]
    red_top = splits.x_train[:, 0, :16].float().mean()
    assert red_top > 200 and splits.x_train[:, 0, 16:].float().mean() < 200


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable zip"),
    (lambda p: image_zip(p, skip="test/cat/"), r"no images in test/cat/"),
    (lambda p: image_zip(p, replace={"train/dog/0001.jpg": jpeg(32, 28)}), r"train/dog/0001.jpg is 28x32 pixels"),
    (lambda p: image_zip(p, replace={"test/ship/0000.jpg": b"not a jpeg"}),
     r"test/ship/0000.jpg is not a readable JPEG"),
])
def test_malformed_jpeg_zips_fail_naming_the_problem(tmp_path, damage, message):
    path = image_zip(tmp_path / "cifar10-jpg.zip")
    damage(path)
    with pytest.raises(ValueError, match=message):
        cifar.read_jpeg_zip(path)


def test_an_unknown_folder_in_the_zip_is_refused(tmp_path):
    path = image_zip(tmp_path / "x.zip")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("train/unicorn/0000.jpg", jpeg())
    with pytest.raises(ValueError, match=r"unexpected entry 'train/unicorn/0000.jpg'.*airplane, automobile"):
        cifar.read_jpeg_zip(path)


def test_a_corrupt_mirror_file_is_refused_and_leaves_nothing(tmp_path, monkeypatch):
    fake = tmp_path / "mirror" / "cifar10"
    fake.mkdir(parents=True)
    image_zip(fake / cifar.MIRROR_FILE)
    monkeypatch.setenv("LESSONFLOW_DATA_MIRROR", str(tmp_path / "mirror"))
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        build(tmp_path / "out", source="mirror")
    assert not (tmp_path / "out" / "raw" / "cifar").exists()


# --- official: the python tarball, served over real HTTP ----------------------------------------

def cifar_pickle(images: np.ndarray, labels: list[int], name: str) -> bytes:
    """One batch in the real format: rows of 3072 bytes (R, G, B planes), labels, names (protocol 2)."""
    return pickle.dumps({"batch_label": name, "labels": labels, "data": images.reshape(len(images), -1),
                         "filenames": [f"{name}_{i}.png" for i in range(len(images))]}, protocol=2)


def cifar_tarball(path: Path, members: dict[str, bytes] | None = None) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6 * 4, 3, 32, 32), dtype=np.uint8)
    labels = (np.arange(len(images)) % 10).tolist()
    batches = {"batches.meta": pickle.dumps({"label_names": cifar.CLASSES, "num_cases_per_batch": 4,
                                             "num_vis": 3072}, protocol=2)}
    for i, name in enumerate([*cifar.TRAIN_BATCHES, cifar.TEST_BATCH]):
        batches[name] = cifar_pickle(images[4 * i: 4 * i + 4], labels[4 * i: 4 * i + 4], name)
    batches.update(members or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in batches.items():
            info = tarfile.TarInfo(f"{cifar.BATCH_DIR}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path, images, np.array(labels)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path/www``; failed rounds retry without the back-off wait."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(tenacity.nap, "time", SimpleNamespace(sleep=lambda seconds: None))  # the retry policy's waits
    yield SimpleNamespace(root=root, url=f"http://127.0.0.1:{httpd.server_port}")
    httpd.shutdown()
    httpd.server_close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_official_tarball_over_http_decodes_the_pickled_batches(tmp_path, server):
    tarball, images, labels = cifar_tarball(server.root / cifar.TARBALL)
    data = build(tmp_path, source="official", urls=[f"{server.url}/{cifar.TARBALL}"], val_fraction=0.25,
                 options={"sha256": sha256(tarball)})
    assert data["source"] == "official"
    assert torch.equal(data["x_test"], torch.from_numpy(images[20:]))
    assert data["y_test"].tolist() == labels[20:].tolist()
    train = torch.cat([data["x_train"], data["x_val"]])
    assert sorted(map(bytes, train.flatten(1).numpy())) == sorted(map(bytes, images[:20].reshape(20, -1)))


def test_other_urls_are_held_to_the_official_checksum_unless_they_state_their_own(tmp_path, server):
    cifar_tarball(server.root / cifar.TARBALL)
    url = f"{server.url}/{cifar.TARBALL}"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        build(tmp_path, source="official", urls=[url])
    assert not (tmp_path / "raw" / "cifar").exists()
    with pytest.raises(ValueError, match=r"options.sha256: only applies .* official URL is always checked"):
        build(tmp_path, source="official", options={"sha256": "0" * 64})
    with pytest.raises(ValueError, match=r"options.md5: unknown option; allowed: sha256"):
        build(tmp_path, source="official", urls=[url], options={"md5": "0" * 32})
    assert cifar.tarball_checksum(DatasetParams()) == ([cifar.OFFICIAL_URL], cifar.OFFICIAL_SHA256)
    from torchvision.datasets import CIFAR10

    assert cifar.OFFICIAL_URL == CIFAR10.url


class RunsCode:
    def __reduce__(self):
        return (os.getenv, ("HOME",))


@pytest.mark.parametrize("member, payload, message", [
    ("data_batch_2", pickle.dumps({"data": RunsCode(), "labels": []}, protocol=2), r"os.getenv is not allowed"),
    ("test_batch", cifar_pickle(np.zeros((3, 3, 32, 32), np.uint8), [0, 1], "test_batch"), "3 images but 2 labels"),
    ("data_batch_1", cifar_pickle(np.zeros((1, 3, 32, 32), np.uint8), [10], "data_batch_1"),
     r"labels must lie in 0..9"),
])
def test_malformed_tarball_batches_are_refused(tmp_path, member, payload, message):
    tarball, _, _ = cifar_tarball(tmp_path / cifar.TARBALL, {member: payload})
    with pytest.raises(ValueError, match=message):
        cifar.read_tarball(tarball)


# --- augmentation: training batches only --------------------------------------------------------

def test_augmentation_crops_and_flips_reproducibly():
    x = torch.rand(64, 3, 32, 32)
    torch.manual_seed(1)
    out = augment_batch(x, Augmentation(resize=40, hflip=True))
    torch.manual_seed(1)
    assert torch.equal(out, augment_batch(x, Augmentation(resize=40, hflip=True)))
    big = F.interpolate(x, size=(40, 40), mode="bilinear", align_corners=False)
    windows = set()
    for i in range(len(x)):
        matches = [(top, left, flip) for top in range(9) for left in range(9) for flip in (False, True)
                   if torch.equal(out[i], big[i, :, top:top + 32, left:left + 32].flip(2) if flip
                                  else big[i, :, top:top + 32, left:left + 32])]
        assert matches, f"image {i} is not a (flipped) 32x32 window of the resized image"
        windows.add(matches[0])
    assert len({w[:2] for w in windows}) > 20 and {w[2] for w in windows} == {False, True}
    with pytest.raises(ValueError, match="augment.resize: 24 is smaller than the 32x32 images"):
        augment_batch(x, Augmentation(resize=24))


def tiny_resnet() -> torch.nn.Module:
    return build_model("resnet_cifar", {"blocks": 1, "channels": [4, 8, 8]}, in_shape=(3, 32, 32), num_classes=10)


def test_augmentation_changes_training_but_never_evaluation(synthetic, tmp_path):
    small = {key: synthetic[key][:100] for key in ("x_train", "y_train", "x_val", "y_val")}
    weights = {}
    for name, augment in [("plain", None), ("augmented", Augmentation(resize=40, hflip=True)),
                          ("again", Augmentation(resize=40, hflip=True))]:
        make_deterministic(0)
        model = tiny_resnet()
        fit(model, small, TrainConfig(epochs=1, batch_size=50, optimizer="adam", lr=0.01, augment=augment),
            tmp_path, name)
        weights[name] = model.state_dict()
    assert not torch.equal(weights["plain"]["fc.weight"], weights["augmented"]["fc.weight"])
    assert all(torch.equal(weights["augmented"][k], weights["again"][k]) for k in weights["again"])  # seeded

    running_mean = model.features[1].running_mean.clone()
    logits = predict_logits(model, synthetic["x_test"], None, CPU)
    assert not model.training and torch.equal(model.features[1].running_mean, running_mean)
    with torch.no_grad():
        clean = model(to_inputs(synthetic["x_test"], None))
    assert torch.equal(logits, clean) and torch.equal(predict_logits(model, synthetic["x_test"], None, CPU), logits)


def test_an_augmented_run_resumed_after_a_kill_ends_like_an_uninterrupted_one(synthetic, tmp_path):
    small = {key: synthetic[key][:100] for key in ("x_train", "y_train", "x_val", "y_val")}

    def run(epochs: int, name: str) -> torch.nn.Module:
        make_deterministic(0)
        model = tiny_resnet()
        fit(model, small, TrainConfig(epochs=epochs, batch_size=25, optimizer="adam", lr=0.01,
                                      augment=Augmentation(resize=40, hflip=True)), tmp_path, name)
        return model

    straight = run(2, "straight")
    with killed_after_checkpoint(tmp_path / "resumed.pt"):  # after epoch 1: its epoch 2 must draw the same
        run(2, "resumed")
    resumed = run(2, "resumed")
    for (key, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), key


# --- the model and the lesson -------------------------------------------------------------------

def test_resnet_has_the_tutorials_shape():
    model = build_model("resnet_cifar", {}, in_shape=(3, 32, 32), num_classes=10)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 12 and sum(not isinstance(b.shortcut, torch.nn.Identity) for b in blocks) == 2
    with torch.no_grad():
        assert model.features[:-2](torch.zeros(2, 3, 32, 32)).shape == (2, 64, 8, 8)  # then AvgPool(8)
        model.eval()
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)  # a batch of one works (the seed squeezed it away)
    assert model.fc.in_features == 64
    assert len([m for m in tiny_resnet().modules() if isinstance(m, BasicBlock)]) == 3


def test_cifar_resnet_lesson_trains_one_short_epoch_and_evaluates_clean(synthetic, tmp_path):
    raw = project_params()
    lesson = raw["lessons"]["cifar-resnet"]
    assert lesson["augment"] == {"resize": 40, "hflip": True} and lesson["reference_accuracy"] == 0.8779
    lesson["epochs"], lesson["seeds"] = 1, 1  # one seed: tests/test_seeds.py trains several
    del lesson["embedded"]  # its sample-data settings would replace the one epoch
    layout = Layout(tmp_path)
    layout.prepared("cifar").parent.mkdir(parents=True)
    torch.save({**synthetic, "x_train": synthetic["x_train"][:200], "y_train": synthetic["y_train"][:200]},
               layout.prepared("cifar"))
    params = parse_params(raw)
    train_stage("cifar-resnet", params, layout)
    metrics = evaluate_stage("cifar-resnet", params, layout)
    assert metrics["epochs"] == 1 and metrics["data_source"] == "synthetic"
    assert np.isfinite(metrics["test_loss"]) and 0 <= metrics["test_accuracy"] <= 1
    assert (layout.eval_log("cifar-resnet") / "plots").is_dir()
