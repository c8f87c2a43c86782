"""MNIST from torchvision's mirrors, a local mirror folder, or scikit-learn's bundled 8x8 digits.

The checksums are of the *decompressed* IDX files: mirrors re-compress the ``.gz``
containers, but the digits inside must be byte-for-byte the published ones.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lessonflow.datasets import DatasetSpec, Splits, mirror_root, register
from lessonflow.datasets.fetch import copy_verified, download, verify

SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
CLASSES = [str(digit) for digit in range(10)]
EMBEDDED_FILE = "sklearn-digits.npz"
IDX_MAGIC = {2049: 1, 2051: 3}  # labels are 1-d, images 3-d


def fetch(source: str, raw_dir: Path, params: Any) -> None:
    if source == "embedded":
        from sklearn.datasets import load_digits

        digits = load_digits()
        np.savez(raw_dir / EMBEDDED_FILE, images=digits.images.astype(np.uint8), labels=digits.target)
        return
    for name, sha in SHA256.items():
        target = raw_dir / f"{name}.gz"
        if source == "mirror":
            copy_verified(mirror_root() / "mnist" / target.name, target, sha256=sha, gunzip=True)
        else:
            from torchvision.datasets import MNIST  # slow to import; only this path needs it

            mirrors = params.urls or MNIST.mirrors
            download([m.rstrip("/") + "/" + target.name for m in mirrors], target, sha256=sha, gunzip=True)


def read_idx(path: Path) -> np.ndarray:
    """Parse one gzip-compressed IDX file, refusing anything whose header does not match its size."""
    data = gzip.decompress(path.read_bytes())
    magic = int.from_bytes(data[:4], "big")
    if magic not in IDX_MAGIC:
        raise ValueError(f"{path}: not an IDX file (magic number {magic})")
    ndim = IDX_MAGIC[magic]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(dims)):
        raise ValueError(f"{path}: header promises {dims} but holds {len(data) - offset} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def embedded_digits(raw_dir: Path) -> Splits:
    """Upscale scikit-learn's 8x8 digits (values 0-16) into MNIST's frame: a 20x20 digit centred in 28x28."""
    from sklearn.model_selection import train_test_split

    with np.load(raw_dir / EMBEDDED_FILE) as bundle:
        images, labels = bundle["images"], bundle["labels"]
    small = torch.from_numpy(images).float().unsqueeze(1) / 16.0
    digits = F.interpolate(small, size=(20, 20), mode="bilinear", align_corners=False)
    frames = F.pad(digits, (4, 4, 4, 4)).mul(255).round().clamp(0, 255).to(torch.uint8)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=0.2, random_state=0, stratify=labels)
    y = torch.from_numpy(labels).long()
    return Splits(frames[train_idx], y[train_idx], frames[test_idx], y[test_idx], CLASSES)


def decode(source: str, raw_dir: Path, params: Any) -> Splits:
    if source == "embedded":
        return embedded_digits(raw_dir)
    arrays = {}
    for name, sha in SHA256.items():
        path = raw_dir / f"{name}.gz"
        verify(path, sha, gunzip=True)
        arrays[name] = torch.from_numpy(read_idx(path).copy())
    return Splits(
        arrays["train-images-idx3-ubyte"].unsqueeze(1), arrays["train-labels-idx1-ubyte"].long(),
        arrays["t10k-images-idx3-ubyte"].unsqueeze(1), arrays["t10k-labels-idx1-ubyte"].long(),
        CLASSES,
    )


register(DatasetSpec("mnist", ("embedded", "official", "mirror"), fetch, decode))
