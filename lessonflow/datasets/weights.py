"""torchvision's ImageNet weights files, fetched once for every lesson that reads them.

The style-transfer lesson and the transfer lessons load the same kind of file the same way: from
the mirror's ``torchvision/`` folder or downloaded from download.pytorch.org, and held to the full
sha256 pinned in params.yaml before anything opens it. ``prefix`` is where a file keeps the part a
transfer lesson freezes: VGG16 under ``features.``, ResNet50 at the top level (all but its ``fc``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lessonflow.datasets.fetch import fetch_file

MIRROR_FOLDER = "torchvision"
OFFICIAL_URL = "https://download.pytorch.org/models/{}"


@dataclass(frozen=True)
class Weights:
    file: str  # torchvision's name: the network's, then the first 8 hex digits of the file's sha256
    prefix: str


TORCHVISION = {
    "vgg16": Weights("vgg16-397923af.pth", "features."),
    "resnet50": Weights("resnet50-0676ba61.pth", ""),
}


def fetch_weights(source: str, file: str, raw_dir: Path, *, sha256: str, urls: list[str] | None = None) -> Path:
    """``file`` into ``raw_dir``, from the mirror or downloaded (``urls``, else torchvision's), checked first."""
    return fetch_file(source, f"{MIRROR_FOLDER}/{file}", urls or [OFFICIAL_URL.format(file)], raw_dir / file,
                      sha256=sha256)
