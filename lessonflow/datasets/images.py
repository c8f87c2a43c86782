"""The style-transfer lesson's inputs (001 §8): a content photo, a style photo and the VGG16 filters that compare them.

``embedded``: scikit-learn's two bundled photographs and no weights, so the lesson draws a seeded
random VGG16 (no installed package ships ImageNet weights). ``official``: torchvision's ImageNet
VGG16 file downloaded, the photos from the paths in ``options`` (the seed ships none); ``mirror``:
all three from the mirror folder. Every file is held to the full sha256 pinned in ``options``, and
prepare keeps only the filters of ``features[:8]``, so training never reads the whole file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, ValidationError

from lessonflow.datasets import DatasetSpec, mirror_root, register
from lessonflow.datasets.fetch import copy_verified, verify
from lessonflow.datasets.weights import MIRROR_FOLDER, TORCHVISION, fetch_weights
from lessonflow.schema import ParamsError, Strict, describe

WEIGHTS_FILE = TORCHVISION["vgg16"].file
MIRROR_WEIGHTS = f"{MIRROR_FOLDER}/{WEIGHTS_FILE}"
MIRROR_IMAGES = {"content": "style-transfer/stata.jpg", "style": "style-transfer/wave.jpg"}
EMBEDDED = {"content": "china.jpg", "style": "flower.jpg"}
EMBEDDED_FILE = "sklearn-sample-images.npz"
CREDITS = ("china.jpg (flickr.com/photos/danielbuechele/6061409035) and flower.jpg (flickr.com/photos/vultilion/"
           "6056698931), CC BY 2.0, as scikit-learn bundles them (sklearn.datasets.load_sample_image)")
RANDOM_FILTERS = "random VGG16 features[:8] (convolutions drawn as torchvision initialises VGG16, seeded by the lesson)"
# VGG16 features[:8]: Conv_1 to Conv_4 of the seed, the only filters its model runs
KEPT_LAYERS = (0, 2, 5, 7)
SHAPES = {0: (64, 3, 3, 3), 2: (64, 64, 3, 3), 5: (128, 64, 3, 3), 7: (128, 128, 3, 3)}


class ImageOptions(Strict):
    """``datasets.images.options``: the pinned checksums, and the seed's photos where the user keeps them."""

    weights_sha256: str = Field(pattern="^[0-9a-f]{64}$")
    content: str | None = None
    style: str | None = None
    content_sha256: str | None = Field(None, pattern="^[0-9a-f]{64}$")
    style_sha256: str | None = Field(None, pattern="^[0-9a-f]{64}$")

    @classmethod
    def of(cls, params: Any) -> ImageOptions:
        try:
            return cls.model_validate(params.options)
        except ValidationError as err:
            raise ParamsError("params.yaml is invalid:\n  " + "\n  ".join(
                describe(err, cls, ("datasets", "images", "options")))) from None

    def pinned(self, role: str) -> str:
        found = getattr(self, f"{role}_sha256")
        if found is None:
            raise ParamsError(f"datasets.images.options.{role}_sha256: pin the sha256 of the {role} image "
                              f"(`sha256sum <file>`); an unpinned image is never used")
        return found

    def image_path(self, role: str, source: str) -> Path:
        given = getattr(self, role)
        if given is not None:
            return Path(os.path.expanduser(given))
        if source == "mirror":
            return mirror_root() / MIRROR_IMAGES[role]
        raise ParamsError(f"datasets.images.options.{role}: source 'official' takes the {role} image from this "
                          f"path (the seed's {Path(MIRROR_IMAGES[role]).name}; no official download exists)")


def fetch(source: str, raw_dir: Path, params: Any) -> None:
    if source == "embedded":
        from sklearn.datasets import load_sample_image

        np.savez(raw_dir / EMBEDDED_FILE, **{role: load_sample_image(name) for role, name in EMBEDDED.items()})
        return
    options = ImageOptions.of(params)
    paths = {role: options.image_path(role, source) for role in EMBEDDED}
    pins = {role: options.pinned(role) for role in EMBEDDED}  # every key checked before a byte is fetched
    fetch_weights(source, WEIGHTS_FILE, raw_dir, sha256=options.weights_sha256, urls=params.urls)
    for role, path in paths.items():  # raw/<role>/<the photo's own name>
        (raw_dir / role).mkdir()
        copy_verified(path, raw_dir / role / path.name, sha256=pins[role])


def read_photo(path: Path) -> torch.Tensor:
    """An RGB photo as a (3, H, W) uint8 tensor, or one error naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from None
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()


def vgg_filters(path: Path) -> dict[str, torch.Tensor]:
    """The weights and biases of VGG16 ``features[:8]`` from a whole torchvision VGG16 file."""
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    kept = {}
    for index in KEPT_LAYERS:
        weight, bias = state.get(f"features.{index}.weight"), state.get(f"features.{index}.bias")
        if weight is None or bias is None or tuple(weight.shape) != SHAPES[index]:
            raise ValueError(f"{path}: not a torchvision VGG16 state dict (features.{index}.weight should be "
                             f"{SHAPES[index]})")
        kept[f"{index}.weight"], kept[f"{index}.bias"] = weight.clone(), bias.clone()
    return kept


def decode(source: str, raw_dir: Path, params: Any) -> dict[str, Any]:
    """The two photos at their own size (the lesson resizes them) and the filters, if any, with what they are."""
    if source == "embedded":
        with np.load(raw_dir / EMBEDDED_FILE) as bundle:
            photos = {role: torch.from_numpy(bundle[role]).permute(2, 0, 1).contiguous() for role in EMBEDDED}
        return {**photos, "weights": {}, "names": dict(EMBEDDED), "credits": CREDITS, "extractor": RANDOM_FILTERS}
    options = ImageOptions.of(params)
    verify(raw_dir / WEIGHTS_FILE, options.weights_sha256)
    photos, names = {}, {}
    for role in EMBEDDED:
        found = sorted((raw_dir / role).glob("*"))
        if len(found) != 1:
            raise FileNotFoundError(f"{raw_dir / role}: expected one photo, found {len(found)}: "
                                    "run the download stage again (dvc repro)")
        verify(found[0], options.pinned(role))
        photos[role], names[role] = read_photo(found[0]), found[0].name
    return {**photos, "weights": vgg_filters(raw_dir / WEIGHTS_FILE), "names": names,
            "credits": "the photos supplied (the mirror's or those named in datasets.images.options): "
                       "their owners' terms apply", "extractor": f"ImageNet VGG16 features[:8] ({WEIGHTS_FILE})"}


register(DatasetSpec("images", ("embedded", "official", "mirror"), fetch, decode))
