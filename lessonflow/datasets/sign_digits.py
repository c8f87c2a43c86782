"""Sign Language Digits (Ayrancı Anadolu High School), as the Kaggle tutorial (seed 000) uses it.

Only the digits 0 and 1, as 64×64 grayscale, split 85/15 with ``random_state=42``; the upstream
RGB JPEGs are decoded once here. ``official``: the GitHub repository archive, which GitHub zips
on request, so its *content* (names and bytes of the digit images) is verified, not the zip's
bytes; ``mirror``: the mirror's zip; ``embedded``: scikit-learn's 8×8 digits 0 and 1, upscaled.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lessonflow.datasets import DatasetSpec, mirror_root, register
from lessonflow.datasets.fetch import ChecksumError, copy_verified, download, verify

OFFICIAL_URLS = ["https://github.com/ardamavi/Sign-Language-Digits-Dataset/archive/refs/heads/master.zip"]
MIRROR_FILE = "sign-language-digits/sign-language-digits.zip"
MIRROR_SHA256 = "1b9b0c4abed217f82d50f1eda454f912b641088caa9b9bc68f72b067b59700fa"
# sha256 over the sorted "<digit>/<file>" names and bytes of every digit-0 and digit-1 image
CONTENT_SHA256 = "ab97bb3bf1c5c00111c0611810a9b23d8c6439ce0c67ce8acceffeb0be0bb1b4"
ARCHIVE = "sign-language-digits.zip"
EMBEDDED_FILE = "sklearn-digits-0-1.npz"
CLASSES = ["0", "1"]
PER_CLASS = 205      # the tutorial's x_1[204:409] and x_1[822:1027]
SOURCE_SIZE = (100, 100)
SIZE = 64
TEST_FRACTION, SPLIT_SEED = 0.15, 42


def digit_members(archive: zipfile.ZipFile) -> dict[str, list[str]]:
    """The image members of the digit folders we use, sorted, whatever folder the archive nests them in."""
    members: dict[str, list[str]] = {digit: [] for digit in CLASSES}
    for name in archive.namelist():
        path = PurePosixPath(name)
        if path.suffix.lower() in (".jpg", ".jpeg") and path.parent.name in members:
            members[path.parent.name].append(name)
    return {digit: sorted(names) for digit, names in members.items()}


def open_archive(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{path}: not a readable zip archive ({err}); delete it and download again") from None


def content_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open_archive(path) as archive:
        for digit, names in digit_members(archive).items():
            for name in names:
                digest.update(f"{digit}/{PurePosixPath(name).name}".encode())
                digest.update(archive.read(name))
    return digest.hexdigest()


def verify_content(path: Path) -> None:
    actual = content_sha256(path)
    if actual != CONTENT_SHA256:
        raise ChecksumError(f"{path}: the digit-0/1 images are not the published ones\n"
                            f"  expected content sha256: {CONTENT_SHA256}\n  actual:                  {actual}")


def fetch(source: str, raw_dir: Path, params: Any) -> None:
    if source == "embedded":
        from sklearn.datasets import load_digits

        digits = load_digits()
        keep = digits.target < 2
        np.savez(raw_dir / EMBEDDED_FILE, images=digits.images[keep].astype(np.uint8), labels=digits.target[keep])
    elif source == "mirror":
        copy_verified(mirror_root() / MIRROR_FILE, raw_dir / ARCHIVE, sha256=MIRROR_SHA256)
    else:
        download(params.urls or OFFICIAL_URLS, raw_dir / ARCHIVE, sha256=None)
        verify_content(raw_dir / ARCHIVE)


def read_digit_images(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 205 images of digits 0 and 1 as (410, 1, 64, 64) uint8 grayscale and their labels."""
    from PIL import Image, UnidentifiedImageError

    images, labels = [], []
    with open_archive(path) as archive:
        for label, (digit, names) in enumerate(digit_members(archive).items()):
            if len(names) < PER_CLASS:
                raise ValueError(f"{path}: folder {digit}/ holds {len(names)} images, expected at least {PER_CLASS}")
            for name in names[:PER_CLASS]:
                try:
                    with Image.open(io.BytesIO(archive.read(name))) as image:
                        if image.size != SOURCE_SIZE:
                            raise ValueError(f"{path}: {name} is {image.size[0]}×{image.size[1]}, expected "
                                             f"{SOURCE_SIZE[0]}×{SOURCE_SIZE[1]}")
                        grey = image.convert("L").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
                except (UnidentifiedImageError, OSError, zipfile.BadZipFile) as err:
                    raise ValueError(f"{path}: {name} is not a readable image ({err})") from None
                images.append(np.asarray(grey, dtype=np.uint8))
                labels.append(label)
    return torch.from_numpy(np.stack(images)).unsqueeze(1), torch.tensor(labels)


def embedded_digits(raw_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8×8 digits (values 0-16) scaled up to the tutorial's 64×64 frame."""
    with np.load(raw_dir / EMBEDDED_FILE) as bundle:
        images, labels = bundle["images"], bundle["labels"]
    small = torch.from_numpy(images).float().unsqueeze(1) / 16.0
    big = F.interpolate(small, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return big.mul(255).round().clamp(0, 255).to(torch.uint8), torch.from_numpy(labels).long()


def decode(source: str, raw_dir: Path, params: Any) -> dict[str, Any]:
    """The tutorial's own 85/15 split and nothing more: these lessons have no validation split."""
    from sklearn.model_selection import train_test_split

    if source == "embedded":
        x, y = embedded_digits(raw_dir)
    else:
        archive = raw_dir / ARCHIVE
        if source == "mirror":
            verify(archive, MIRROR_SHA256)
        else:
            verify_content(archive)
        x, y = read_digit_images(archive)
    train, test = train_test_split(np.arange(len(y)), test_size=TEST_FRACTION, random_state=SPLIT_SEED)
    return {"classes": CLASSES, "x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}


register(DatasetSpec("sign-digits", ("embedded", "official", "mirror"), fetch, decode))
