"""CIFAR-10 from the official python tarball, a JPEG mirror, or a procedurally drawn stand-in.

``official``: torchvision's tarball, held to the sha256 Keras publishes, unpickled with numpy
arrays only; other ``urls`` must serve the same file, unless ``options.sha256`` states another
(refused without ``urls``, so the official URL always meets the official checksum). ``mirror``:
the mirror's ImageFolder JPEG zip, decoded once. ``embedded``: seeded coloured shapes, labelled
``synthetic`` in the metrics since they are not photographs. All end as uint8 (N, 3, 32, 32).
"""

from __future__ import annotations

import io
import math
import pickle
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from lessonflow.datasets import DatasetSpec, Splits, mirror_root, register
from lessonflow.datasets.fetch import copy_verified, download, verify

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SIZE = 32

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"  # = torchvision CIFAR10.url
# Keras' file_hash for this URL; md5 c58f30108f718f92721af3b95e74349a (= torchvision CIFAR10.tgz_md5)
OFFICIAL_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
TARBALL = "cifar-10-python.tar.gz"
BATCH_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
OPTIONS = ("sha256",)

MIRROR_FILE = "cifar10-jpg.zip"
MIRROR_SHA256 = "0287a3668d9e0d204fc6ffa0e85a171724de09b8aec55d93153b270368489df4"

SYNTHETIC_FILE = "synthetic.pt"
SYNTHETIC_CLASSES = ["horizontal-stripes", "vertical-stripes", "diagonal-stripes", "checkerboard", "disk",
                     "ring", "square", "cross", "triangle", "dots"]
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 1000, 200


# --- official: the python tarball ---------------------------------------------------------------

def tarball_checksum(params: Any) -> tuple[list[str], str]:
    """The URLs to try and the sha256 they must serve (see the module docstring for the rules)."""
    unknown = sorted(set(params.options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"datasets.cifar.options.{unknown[0]}: unknown option; allowed: {', '.join(OPTIONS)}")
    own = params.options.get("sha256")
    if own is not None and not params.urls:
        raise ValueError("datasets.cifar.options.sha256: only applies to a tarball of your own listed in "
                         "datasets.cifar.urls; the official URL is always checked against the official checksum")
    return list(params.urls) or [OFFICIAL_URL], own or OFFICIAL_SHA256


class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR's batches are pickles; admit what an array needs and nothing that could run code.

    ``_codecs.encode`` is how protocol 2 spells bytes when Python 3 writes it (text in, bytes out).
    """

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")
        return super().find_class(module, name)


def read_batch(tar: tarfile.TarFile, name: str, path: Path) -> dict[str, Any]:
    member = f"{BATCH_DIR}/{name}"
    try:
        handle = tar.extractfile(member)
    except KeyError:
        raise ValueError(f"{path}: {member} missing; not a CIFAR-10 python tarball") from None
    try:
        return _ArrayUnpickler(io.BytesIO(handle.read()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise ValueError(f"{path}: {member} is not a CIFAR-10 batch ({err})") from None


def batch_tensors(batch: dict[str, Any], where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch's rows of 3072 bytes (R, G, B planes of 32x32) and its labels, checked against each other."""
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * SIZE**2:
        raise ValueError(f"{where}: 'data' must be uint8 rows of {3 * SIZE**2} bytes")
    if labels is None or len(labels) != len(data):
        raise ValueError(f"{where}: {len(data)} images but {0 if labels is None else len(labels)} labels")
    y = torch.tensor(list(labels), dtype=torch.long)
    if len(y) and not 0 <= int(y.min()) <= int(y.max()) < len(CLASSES):
        raise ValueError(f"{where}: labels must lie in 0..{len(CLASSES) - 1}")
    return torch.from_numpy(data.copy()).view(-1, 3, SIZE, SIZE), y


def read_tarball(path: Path) -> Splits:
    try:
        tar = tarfile.open(path, "r:gz")
    except (tarfile.TarError, OSError) as err:
        raise ValueError(f"{path}: not a readable tar.gz ({err})") from None
    with tar:
        meta = read_batch(tar, "batches.meta", path)
        if list(meta.get("label_names", [])) != CLASSES:
            raise ValueError(f"{path}: batches.meta names the classes {meta.get('label_names')}; expected {CLASSES}")
        train = [batch_tensors(read_batch(tar, name, path), f"{path}: {name}") for name in TRAIN_BATCHES]
        x_test, y_test = batch_tensors(read_batch(tar, TEST_BATCH, path), f"{path}: {TEST_BATCH}")
    return Splits(torch.cat([x for x, _ in train]), torch.cat([y for _, y in train]), x_test, y_test, CLASSES)


# --- mirror: a zip of JPEGs in ImageFolder layout -----------------------------------------------

def zip_entries(archive: zipfile.ZipFile, path: Path) -> dict[str, list[tuple[str, int]]]:
    """``{split: [(member, label), ...]}`` sorted by class then name; anything off the layout is an error."""
    layout = f"expected train/<class>/*.jpg and test/<class>/*.jpg with the classes {', '.join(CLASSES)}"
    entries: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for name in sorted(archive.namelist()):
        if name.endswith("/"):
            continue
        parts = name.split("/")
        if len(parts) != 3 or parts[0] not in entries or parts[1] not in CLASSES \
                or not parts[2].lower().endswith((".jpg", ".jpeg")):
            raise ValueError(f"{path}: unexpected entry {name!r}; {layout}")
        entries[parts[0]].append((name, CLASSES.index(parts[1])))
    for split, members in entries.items():
        present = {label for _, label in members}
        missing = [cls for label, cls in enumerate(CLASSES) if label not in present]
        if missing:
            raise ValueError(f"{path}: no images in {split}/{missing[0]}/; {layout}")
    for split in entries:
        entries[split].sort(key=lambda entry: (entry[1], entry[0]))
    return entries


def decode_jpegs(archive: zipfile.ZipFile, members: list[str], path: Path, desc: str) -> torch.Tensor:
    """Decode the JPEG members once into one uint8 (N, 3, 32, 32) tensor, naming any bad file."""
    images = np.empty((len(members), SIZE, SIZE, 3), dtype=np.uint8)
    for i, name in enumerate(tqdm(members, desc=desc, unit="img", leave=False, mininterval=1.0)):
        try:
            data = archive.read(name)
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise ValueError(f"{path}: damaged archive at {name} ({err}); delete it and download again") from None
        try:
            with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
                rgb = image.convert("RGB")
        except (OSError, ValueError) as err:
            raise ValueError(f"{path}: {name} is not a readable JPEG ({err})") from None
        if rgb.size != (SIZE, SIZE):
            raise ValueError(f"{path}: {name} is {rgb.width}x{rgb.height} pixels; CIFAR-10 images are {SIZE}x{SIZE}")
        images[i] = np.asarray(rgb)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def read_jpeg_zip(path: Path) -> Splits:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{path}: not a readable zip ({err}); it may be truncated") from None
    with archive:
        entries = zip_entries(archive, path)
        tensors = {}
        for split, members in entries.items():
            x = decode_jpegs(archive, [name for name, _ in members], path, f"decoding {split}")
            tensors[split] = x, torch.tensor([label for _, label in members], dtype=torch.long)
    return Splits(*tensors["train"], *tensors["test"], CLASSES)


# --- embedded: procedurally drawn shapes and patterns -------------------------------------------

def _masks(label: int, n: int, g: torch.Generator) -> torch.Tensor:
    """Foreground masks (n, 32, 32) of one class, each with its own random position, size, frequency and phase."""
    def uniform(low: float, high: float) -> torch.Tensor:
        return (low + (high - low) * torch.rand(n, generator=g))[:, None, None]

    axis = (torch.arange(SIZE) + 0.5) / SIZE * 2 - 1  # pixel centres in [-1, 1]
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    freq, phase = uniform(2.0, 3.5) * math.pi, uniform(0, 2 * math.pi)
    dx, dy, r = xx - uniform(-0.3, 0.3), yy - uniform(-0.3, 0.3), uniform(0.35, 0.6)
    name = SYNTHETIC_CLASSES[label]
    if name == "horizontal-stripes":
        return torch.sin(freq * yy + phase) > 0
    if name == "vertical-stripes":
        return torch.sin(freq * xx + phase) > 0
    if name == "diagonal-stripes":
        return torch.sin(freq * (xx + yy) / math.sqrt(2) + phase) > 0
    if name == "checkerboard":
        return torch.sin(freq * xx / 1.5 + phase) * torch.sin(freq * yy / 1.5 + phase) > 0
    if name == "disk":
        return dx**2 + dy**2 < r**2
    if name == "ring":
        return ((dx**2 + dy**2).sqrt() - r).abs() < 0.12
    if name == "square":
        return torch.maximum(dx.abs(), dy.abs()) < 0.85 * r
    if name == "cross":
        return ((dx.abs() < 0.12) & (dy.abs() < r)) | ((dy.abs() < 0.12) & (dx.abs() < r))
    if name == "triangle":  # apex up, symmetric under a left-right flip
        return (dy < 0.6 * r) & (dy > -r + 1.8 * dx.abs())
    return (torch.sin(freq * xx + phase) > 0.6) & (torch.sin(freq * yy + phase) > 0.6)  # dots


def synthetic_images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` balanced images: a random light/dark colour pair per image, the class's mask, pixel noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(SYNTHETIC_CLASSES)
    images = torch.empty((n, 3, SIZE, SIZE))
    for label in range(len(SYNTHETIC_CLASSES)):
        index = (labels == label).nonzero().flatten()
        mask = _masks(label, len(index), g)[:, None].float()
        dark = 0.45 * torch.rand(len(index), 3, 1, 1, generator=g)
        light = 0.55 + 0.45 * torch.rand(len(index), 3, 1, 1, generator=g)
        swap = (torch.rand(len(index), 1, 1, 1, generator=g) < 0.5).float()
        background, foreground = swap * dark + (1 - swap) * light, swap * light + (1 - swap) * dark
        images[index] = background + (foreground - background) * mask
    images += 0.08 * torch.randn(images.shape, generator=g)
    order = torch.randperm(n, generator=g)
    return images[order].clamp(0, 1).mul(255).round().to(torch.uint8), labels[order]


# --- the spec -----------------------------------------------------------------------------------

def fetch(source: str, raw_dir: Path, params: Any) -> None:
    if source == "embedded":
        (x_train, y_train), (x_test, y_test) = (synthetic_images(n, seed) for seed, n in
                                                enumerate((SYNTHETIC_TRAIN, SYNTHETIC_TEST)))
        torch.save({"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test},
                   raw_dir / SYNTHETIC_FILE)
    elif source == "mirror":
        copy_verified(mirror_root() / "cifar10" / MIRROR_FILE, raw_dir / MIRROR_FILE, sha256=MIRROR_SHA256)
    else:
        urls, sha256 = tarball_checksum(params)
        download(urls, raw_dir / TARBALL, sha256=sha256)


def decode(source: str, raw_dir: Path, params: Any) -> Splits:
    if source == "embedded":
        bundle = torch.load(raw_dir / SYNTHETIC_FILE, weights_only=True)
        return Splits(bundle["x_train"], bundle["y_train"], bundle["x_test"], bundle["y_test"],
                      SYNTHETIC_CLASSES, source="synthetic")
    if source == "mirror":
        verify(raw_dir / MIRROR_FILE, MIRROR_SHA256)
        return read_jpeg_zip(raw_dir / MIRROR_FILE)
    verify(raw_dir / TARBALL, tarball_checksum(params)[1])
    return read_tarball(raw_dir / TARBALL)


register(DatasetSpec("cifar", ("embedded", "official", "mirror"), fetch, decode))
