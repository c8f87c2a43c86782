"""Cats against dogs for the full profile (001 §7.5.4, §7.5.6): Oxford-IIIT Pet's photos and ImageNet's weights.

The seed's ``Cat_Dog_data`` publishes no checksum; Oxford-IIIT Pet does (its tarballs' sha256 are
pinned in params.yaml), and its species column is torchvision's ``binary-category`` target: cat or
dog, split as its authors split it (trainval, test). ``official``: the Oxford server (or ``urls``),
``mirror``: ``oxford-iiit-pet/`` and ``torchvision/`` there. The ImageNet weights files the transfer
lessons freeze come with it, each held to its pin. Prepare resizes every photo once. No embedded
source: on the embedded profile the transfer lessons learn from CIFAR instead (their ``full:``).
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pydantic import Field, ValidationError
from tqdm import tqdm

from lessonflow.datasets import DatasetSpec, Splits, register
from lessonflow.datasets.fetch import fetch_file, verify
from lessonflow.datasets.weights import TORCHVISION, fetch_weights
from lessonflow.schema import ParamsError, Strict, describe

CLASSES = ["cat", "dog"]  # the annotations' species 1 and 2
TARBALLS = {"images": "images.tar.gz", "annotations": "annotations.tar.gz"}
MIRROR_FOLDER = "oxford-iiit-pet"
OFFICIAL_FOLDERS = ["https://www.robots.ox.ac.uk/~vgg/data/pets/data/", "https://thor.robots.ox.ac.uk/~vgg/data/pets/"]
SPLITS = {"train": "annotations/trainval.txt", "test": "annotations/test.txt"}
SHA256 = "^[0-9a-f]{64}$"


class CatDogOptions(Strict):
    """``datasets.catdog.options``: the tarballs' and each weights file's sha256, and the photos' side in pixels."""

    images_sha256: str | None = Field(None, pattern=SHA256)
    annotations_sha256: str | None = Field(None, pattern=SHA256)
    weights: dict[str, str] = Field(default_factory=dict)
    size: int = Field(224, gt=0)

    @classmethod
    def of(cls, params: Any) -> CatDogOptions:
        try:
            options = cls.model_validate(params.options)
        except ValidationError as err:
            raise ParamsError("params.yaml is invalid:\n  " + "\n  ".join(
                describe(err, cls, ("datasets", "catdog", "options")))) from None
        for name, sha256 in options.weights.items():
            if name not in TORCHVISION:
                raise ParamsError(f"datasets.catdog.options.weights.{name}: unknown network; "
                                  f"allowed: {', '.join(TORCHVISION)}")
            if len(sha256) != 64 or set(sha256) - set("0123456789abcdef"):
                raise ParamsError(f"datasets.catdog.options.weights.{name}: a full sha256 (64 hex digits) expected")
        return options

    def pinned(self, role: str) -> str:
        found = getattr(self, f"{role}_sha256")
        if found is None:
            raise ParamsError(f"datasets.catdog.options.{role}_sha256: pin the sha256 of {TARBALLS[role]} "
                              "(`sha256sum <file>`); an unpinned file is never used")
        return found


def fetch(source: str, raw_dir: Path, params: Any) -> None:
    options = CatDogOptions.of(params)
    pins = {role: options.pinned(role) for role in TARBALLS}  # every key checked before a byte is fetched
    folders = params.urls or OFFICIAL_FOLDERS
    for role, name in TARBALLS.items():
        fetch_file(source, f"{MIRROR_FOLDER}/{name}", [folder + name for folder in folders], raw_dir / name,
                   sha256=pins[role])
    for network, sha256 in options.weights.items():
        file = TORCHVISION[network].file
        fetch_weights(source, file, raw_dir, sha256=sha256, urls=[folder + file for folder in params.urls])


def split_lists(path: Path) -> dict[str, list[tuple[str, int]]]:
    """Each split's (image id, 0 cat / 1 dog) from the annotations' ``<id> <breed> <species> <breed id>`` lines."""
    found = {}
    with tarfile.open(path) as tar:
        for split, member in SPLITS.items():
            try:
                lines = tar.extractfile(member).read().decode().splitlines()
            except (KeyError, AttributeError):
                raise ValueError(f"{path}: has no {member}; not Oxford-IIIT Pet's annotations.tar.gz") from None
            rows = [line.split() for line in lines if line.strip() and not line.startswith("#")]
            found[split] = [(row[0], int(row[2]) - 1) for row in rows]
    return found


def read_photos(path: Path, wanted: set[str], size: int) -> dict[str, torch.Tensor]:
    """The ``wanted`` photos of images.tar.gz, each as RGB ``size``×``size`` uint8, read in one pass."""
    photos = {}
    with tarfile.open(path, "r|gz") as tar:
        for member in tqdm(tar, desc="images.tar.gz", unit="file", leave=False, mininterval=1.0):
            image_id = PurePosixPath(member.name).stem
            if not member.isfile() or image_id not in wanted:
                continue
            try:
                with Image.open(io.BytesIO(tar.extractfile(member).read())) as image:
                    pixels = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            except (UnidentifiedImageError, OSError) as err:
                raise ValueError(f"{path}: {member.name} is not a readable image ({err})") from None
            photos[image_id] = torch.from_numpy(np.asarray(pixels).copy()).permute(2, 0, 1)
    missing = sorted(wanted - set(photos))
    if missing:
        raise ValueError(f"{path}: has no photo {missing[0]}.jpg that the annotations list "
                         f"({len(missing)} missing); not Oxford-IIIT Pet's images.tar.gz")
    return photos


def decode(source: str, raw_dir: Path, params: Any) -> Splits:
    options = CatDogOptions.of(params)
    for role, name in TARBALLS.items():
        verify(raw_dir / name, options.pinned(role))
    lists = split_lists(raw_dir / TARBALLS["annotations"])
    photos = read_photos(raw_dir / TARBALLS["images"], {i for rows in lists.values() for i, _ in rows}, options.size)
    x = {split: torch.stack([photos[i] for i, _ in rows]) for split, rows in lists.items()}
    y = {split: torch.tensor([label for _, label in rows], dtype=torch.long) for split, rows in lists.items()}
    return Splits(x["train"], y["train"], x["test"], y["test"], CLASSES)


register(DatasetSpec("catdog", ("official", "mirror"), fetch, decode))
