"""Downloads and raw files: mirrors tried in turn with back-off, checksums enforced, nothing half-written.

The files are the real MNIST files of the offline mirror, served over real HTTP from
127.0.0.1 by a server that can also answer 404, garbage, a failure, or stall mid-file.
"""

from __future__ import annotations

import gzip
import http.server
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import project_env, run
from lessonflow.datasets import mnist
from lessonflow.datasets.fetch import ChecksumError, DownloadError, download, verify
from lessonflow.params import DatasetParams

LABELS = "t10k-labels-idx1-ubyte"
LABELS_GZ = f"{LABELS}.gz"


class MirrorServer(http.server.ThreadingHTTPServer):
    """``/good/<file>`` serves the mirror; ``/missing`` 404s; ``/garbage`` answers HTML; ``/flaky``
    fails each file's first request with 503; ``/stall`` sends half a file and then hangs."""

    daemon_threads = True

    def __init__(self, files: Path):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files = files
        self.requests: list[tuple[float, str]] = []
        self.stalled = threading.Event()
        self.release = threading.Event()

    def url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{kind}"


class Handler(http.server.BaseHTTPRequestHandler):
    server: MirrorServer

    def log_message(self, *args) -> None:  # keep pytest's output readable
        pass

    def do_GET(self) -> None:
        self.server.requests.append((time.monotonic(), self.path))
        kind, _, name = self.path.strip("/").partition("/")
        path = self.server.files / name
        if kind == "garbage":
            return self.answer(200, b"<html>this mirror moved</html>")
        first_try = sum(p == self.path for _, p in self.server.requests) == 1
        if kind == "missing" or not path.is_file() or (kind == "flaky" and first_try):
            return self.answer(404 if kind != "flaky" else 503, b"no")
        body = path.read_bytes()
        if kind == "stall":
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.server.stalled.set()
            self.server.release.wait(120)
            return None
        return self.answer(200, body)

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(mirror):
    httpd = MirrorServer(mirror / "mnist")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()


def dead_url() -> str:
    """A port nobody listens on: connection refused, like a mirror that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def corrupt_copy(mirror: Path, dest: Path, name: str, how: str) -> Path:
    """A copy of the MNIST mirror in which ``name`` is truncated or has one byte flipped mid-file."""
    shutil.copytree(mirror / "mnist", dest)
    path = dest / name
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return dest


def test_download_falls_through_dead_missing_and_garbage_mirrors(server, tmp_path):
    final = tmp_path / LABELS_GZ
    urls = [f"{dead_url()}/{LABELS_GZ}"] + [f"{server.url(kind)}/{LABELS_GZ}" for kind in ("missing", "garbage", "good")]
    download(urls, final, sha256=mnist.SHA256[LABELS], gunzip=True, backoff=0.01)
    verify(final, mnist.SHA256[LABELS], gunzip=True)
    assert [path for _, path in server.requests] == [f"/{kind}/{LABELS_GZ}" for kind in ("missing", "garbage", "good")]
    assert sorted(p.name for p in tmp_path.iterdir()) == [LABELS_GZ]  # no temporary file left beside it


def test_download_retries_a_failed_round_after_a_back_off(server, tmp_path):
    final = tmp_path / LABELS_GZ
    download([f"{server.url('flaky')}/{LABELS_GZ}"], final, sha256=mnist.SHA256[LABELS], gunzip=True, backoff=0.5)
    (first, _), (second, _) = server.requests
    assert second - first >= 0.5
    verify(final, mnist.SHA256[LABELS], gunzip=True)


@pytest.mark.parametrize("how", ["truncated", "flipped"])
def test_a_corrupt_download_is_refused_and_never_lands(server, mirror, tmp_path, how):
    server.files = corrupt_copy(mirror, tmp_path / "bad-mirror", LABELS_GZ, how)
    final = tmp_path / "raw" / LABELS_GZ
    with pytest.raises(DownloadError) as caught:
        download([f"{server.url('good')}/{LABELS_GZ}"], final, sha256=mnist.SHA256[LABELS], gunzip=True,
                 rounds=2, backoff=0.01)
    message = str(caught.value)
    assert message.count(f"{server.url('good')}/{LABELS_GZ}") == 2  # both rounds tried it
    assert mnist.SHA256[LABELS] in message
    assert list(final.parent.iterdir()) == []


@pytest.mark.parametrize("how", ["truncated", "flipped"])
def test_verify_names_the_file_and_the_expected_checksum(mirror, tmp_path, how):
    bad = corrupt_copy(mirror, tmp_path / "bad", LABELS_GZ, how) / LABELS_GZ
    with pytest.raises(ChecksumError) as caught:
        verify(bad, mnist.SHA256[LABELS], gunzip=True)
    assert str(bad) in str(caught.value) and mnist.SHA256[LABELS] in str(caught.value)


def write_idx(path: Path, magic: int, dims: list[int], payload: bytes) -> Path:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    path.write_bytes(gzip.compress(header + payload))
    return path


def test_malformed_idx_files_are_refused_with_their_path(tmp_path):
    with pytest.raises(ValueError, match="not an IDX file"):
        mnist.read_idx(write_idx(tmp_path / "magic.gz", 1234, [3], b"abc"))
    wrong_size = write_idx(tmp_path / "size.gz", 2051, [2, 28, 28], bytes(28 * 28))  # promises 2 images, holds 1
    with pytest.raises(ValueError, match="header promises") as caught:
        mnist.read_idx(wrong_size)
    assert str(wrong_size) in str(caught.value)


def test_a_truncated_raw_file_is_never_decoded(mirror, tmp_path):
    raw = corrupt_copy(mirror, tmp_path / "raw", "train-labels-idx1-ubyte.gz", "truncated")
    with pytest.raises(ChecksumError, match="train-labels-idx1-ubyte.gz"):
        mnist.decode("official", raw, DatasetParams())


def set_mnist(repo: Path, **settings) -> None:
    params_path = repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["datasets"]["mnist"].update(settings)
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))


def stage(repo: Path, verb: str, **env: str):
    return run(repo, sys.executable, "-m", f"stages.{verb}", "mnist", check=False, env=project_env(**env))


def files_of(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_download_stage_survives_bad_mirrors_kills_and_corrupt_files(project, server, mirror, tmp_path):
    """One project, as a user would live it: a good download through broken mirrors, a killed
    re-download, a corrupt local mirror, a corrupt file in the raw cache. Nothing is ever lost."""
    raw = project / "data" / "raw" / "mnist"
    set_mnist(project, source="official", urls=[dead_url(), server.url("missing"), server.url("good")])
    result = stage(project, "download")
    assert result.returncode == 0, result.stderr
    for name, sha in mnist.SHA256.items():
        verify(raw / f"{name}.gz", sha, gunzip=True)
    good = files_of(raw)

    # killed while a file is half-downloaded: the complete raw folder stays as it was
    set_mnist(project, urls=[server.url("stall")])
    process = subprocess.Popen([sys.executable, "-m", "stages.download", "mnist"], cwd=project, env=project_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert server.stalled.wait(300), "the download never started"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert files_of(raw) == good

    # a corrupt file in a local mirror: refused with its path and checksum, nothing replaced
    bad_mirror = corrupt_copy(mirror, tmp_path / "bad" / "mnist", LABELS_GZ, "flipped").parent
    set_mnist(project, source="mirror", urls=[])
    result = stage(project, "download", LESSONFLOW_DATA_MIRROR=str(bad_mirror))
    assert result.returncode == 1
    assert str(bad_mirror / "mnist" / LABELS_GZ) in result.stderr and mnist.SHA256[LABELS] in result.stderr
    assert "Traceback" not in result.stderr
    assert files_of(raw) == good
    assert sorted(p.name for p in raw.parent.iterdir()) == ["mnist"]  # no staging folder left behind

    # a truncated file in the raw cache: prepare refuses it, writes nothing
    (raw / LABELS_GZ).write_bytes(good[LABELS_GZ][:1000])
    result = stage(project, "prepare")
    assert result.returncode == 1
    assert str(raw / LABELS_GZ) in result.stderr and mnist.SHA256[LABELS] in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "data" / "prepared").exists()
