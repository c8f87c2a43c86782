"""The sign-digits, Boston and Pima loaders: real mirror files, the official path offline, malformed input."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import torch
from PIL import Image

from lessonflow.datasets import boston, pima, sign_digits
from lessonflow.datasets.fetch import ChecksumError
from lessonflow.datasets.tables import read_table
from lessonflow.params import DatasetParams

MIRROR = DatasetParams(source="mirror")


@pytest.fixture
def use_mirror(mirror, monkeypatch):
    monkeypatch.setenv("LESSONFLOW_DATA_MIRROR", str(mirror))
    return mirror


def fetched(spec_module, source: str, raw_dir: Path, params: DatasetParams = MIRROR):
    raw_dir.mkdir(parents=True, exist_ok=True)
    spec_module.fetch(source, raw_dir, params)
    return spec_module.decode(source, raw_dir, params)


def test_boston_from_the_mirror_is_the_seed_split_with_rm(use_mirror, tmp_path):
    data = fetched(boston, "mirror", tmp_path)
    assert data["x_train"].shape == (404, 13) and data["x_test"].shape == (102, 13)
    assert data["key_feature"] == "RM" and data["features"][5] == "RM"
    everything = torch.cat([data["y_train"], data["y_test"]])
    assert everything.mean().item() == pytest.approx(22.5328, abs=1e-3)  # the published mean MEDV
    assert data["x_train"][:, 5].min() > 3 and data["x_train"][:, 5].max() < 9  # rooms per dwelling


def test_pima_from_the_mirror_is_scaled_on_train_only(use_mirror, tmp_path):
    splits = fetched(pima, "mirror", tmp_path)
    assert splits.x_train.shape == (614, 8) and splits.x_test.shape == (154, 8)
    assert splits.x_train.min().item() == -1.0 and splits.x_train.max().item() == 1.0
    assert splits.classes == ["no diabetes", "diabetes"]
    outcomes = torch.cat([splits.y_train, splits.y_test])
    assert outcomes.sum().item() == 268  # 268 of 768 women developed diabetes


def test_sign_digits_from_the_mirror_are_the_tutorials_410_images(use_mirror, tmp_path):
    data = fetched(sign_digits, "mirror", tmp_path)
    assert data["x_train"].shape == (348, 1, 64, 64) and data["x_test"].shape == (62, 1, 64, 64)
    assert data["x_train"].dtype == torch.uint8
    labels = torch.cat([data["y_train"], data["y_test"]])
    assert torch.bincount(labels).tolist() == [205, 205]


def github_style_archive(mirror: Path, dest: Path, change_one: bool = False) -> Path:
    """The digit-0/1 images of the mirror, laid out as GitHub's repository archive nests them."""
    with zipfile.ZipFile(mirror / sign_digits.MIRROR_FILE) as source, zipfile.ZipFile(dest, "w") as out:
        out.writestr("Sign-Language-Digits-Dataset-master/README.md", "readme")
        for digit, names in sign_digits.digit_members(source).items():
            for i, name in enumerate(names):
                data = source.read(name)
                if change_one and i == 0:
                    data = data[:-2] + b"\x00\x00"
                out.writestr(f"Sign-Language-Digits-Dataset-master/Dataset/{digit}/{PurePosixPath(name).name}", data)
    return dest


def test_official_sign_archive_is_verified_by_its_content(use_mirror, tmp_path):
    good = github_style_archive(use_mirror, tmp_path / "good.zip")
    sign_digits.verify_content(good)
    assert sign_digits.read_digit_images(good)[0].shape == (410, 1, 64, 64)
    bad = github_style_archive(use_mirror, tmp_path / "bad.zip", change_one=True)
    with pytest.raises(ChecksumError, match="bad.zip: the digit-0/1 images are not the published ones"):
        sign_digits.verify_content(bad)


def test_official_boston_download_checks_the_sha256(use_mirror, tmp_path):
    url = (use_mirror / boston.MIRROR_FILE).as_uri()  # a file:// URL stands in for the UCI server
    data = fetched(boston, "official", tmp_path / "raw", DatasetParams(source="official", urls=[url]))
    assert data["x_train"].shape == (404, 13)


def test_truncated_mirror_files_are_refused_by_name(use_mirror, tmp_path, monkeypatch):
    fake = tmp_path / "mirror"
    for relative in (boston.MIRROR_FILE, pima.MIRROR_FILE, sign_digits.MIRROR_FILE):
        target = fake / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        data = (use_mirror / relative).read_bytes()
        target.write_bytes(data[: len(data) // 2])
    monkeypatch.setenv("LESSONFLOW_DATA_MIRROR", str(fake))
    for module, relative in ((boston, boston.MIRROR_FILE), (pima, pima.MIRROR_FILE),
                             (sign_digits, sign_digits.MIRROR_FILE)):
        raw = tmp_path / "raw" / module.__name__
        raw.mkdir(parents=True)
        with pytest.raises(ChecksumError, match=f"{Path(relative).name}: checksum mismatch"):
            module.fetch("mirror", raw, MIRROR)
        assert not list(raw.iterdir()), "nothing half-copied is left behind"


def test_a_table_with_a_wrong_row_names_the_file_and_line(tmp_path):
    path = tmp_path / "housing.data"
    path.write_text(" 1 2 3\n 4 5 6\n 7 8\n")
    with pytest.raises(ValueError, match=r"housing.data, line 3: 2 columns, expected 3"):
        read_table(path, 3)
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match=r"housing.data, line 1: not all values are numbers"):
        read_table(path, 3, delimiter=",")
    path.write_text("\n")
    with pytest.raises(ValueError, match="housing.data: no data rows"):
        read_table(path, 3)


def test_pima_outcome_must_be_zero_or_one(tmp_path):
    path = tmp_path / "pima.csv"
    path.write_text("6,148,72,35,0,33.6,0.627,50,1\n1,85,66,29,0,26.6,0.351,31,2\n")
    with pytest.raises(ValueError, match="pima.csv, row 2: the outcome .* must be 0 or 1"):
        pima.read_pima(path)
    path.write_text("6,148,72,35,0,33.6,0.627,50\n")
    with pytest.raises(ValueError, match="pima.csv, line 1: 8 columns, expected 9"):
        pima.read_pima(path)


def jpeg(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 80, 40)).save(buffer, format="JPEG")
    return buffer.getvalue()


def sign_zip(path: Path, per_class: int, size=(100, 100), broken: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for digit in ("0", "1"):
            for i in range(per_class):
                name = f"{digit}/IMG_{i:04d}.JPG"
                archive.writestr(name, b"not a jpeg" if name == broken else jpeg(size))
    return path


def test_sign_archive_problems_name_the_file_and_member(tmp_path):
    with pytest.raises(ValueError, match=r"small.zip: 0/IMG_0000.JPG is 50×50, expected 100×100"):
        sign_digits.read_digit_images(sign_zip(tmp_path / "small.zip", 205, size=(50, 50)))
    with pytest.raises(ValueError, match=r"few.zip: folder 0/ holds 3 images, expected at least 205"):
        sign_digits.read_digit_images(sign_zip(tmp_path / "few.zip", 3))
    with pytest.raises(ValueError, match=r"broken.zip: 1/IMG_0007.JPG is not a readable image"):
        sign_digits.read_digit_images(sign_zip(tmp_path / "broken.zip", 205, broken="1/IMG_0007.JPG"))
    (tmp_path / "notzip.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match="notzip.zip: not a readable zip archive"):
        sign_digits.read_digit_images(tmp_path / "notzip.zip")


def test_embedded_sources_need_no_download(tmp_path):
    sign = fetched(sign_digits, "embedded", tmp_path / "sign")
    assert sign["x_train"].shape[1:] == (1, 64, 64)
    assert set(torch.cat([sign["y_train"], sign["y_test"]]).tolist()) == {0, 1}
    regression = fetched(boston, "embedded", tmp_path / "boston")
    assert regression["key_feature"] == "BMI/10" and regression["x_train"].shape[1] == 10
    bmi = regression["x_train"][:, regression["features"].index("BMI/10")]
    assert 1.5 < bmi.min().item() and bmi.max().item() < 5  # BMI in tens of kg/m²
    cancer = fetched(pima, "embedded", tmp_path / "pima")
    assert cancer.x_train.shape[1] == 30 and cancer.classes == ["malignant", "benign"]
    assert np.isclose(cancer.x_train.min().item(), -1.0) and np.isclose(cancer.x_train.max().item(), 1.0)
