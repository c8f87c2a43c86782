"""Getting bytes onto disk safely: mirrors tried in turn, progress shown, checksums enforced.

A file only ever appears under its final name after it was completely written and
its checksum matched, so a kill, a dropped connection or a corrupt mirror can never
leave a half-file that a later stage would decode.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import shutil
import urllib.request
import zlib
from collections.abc import Iterable
from pathlib import Path

from tenacity import retry_if_exception_type
from tqdm import tqdm

from lessonflow.atomic import atomic_path
from lessonflow.datasets import mirror_root
from lessonflow.errors import ChecksumError, DownloadError
from lessonflow.retry import retrying

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def sha256_of(path: Path, *, gunzip: bool = False) -> str:
    digest = hashlib.sha256()
    opener = gzip.open if gunzip else open
    try:
        with opener(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
    except (OSError, EOFError, zlib.error) as err:  # a truncated or bit-flipped gzip stream fails here
        raise ChecksumError(f"{path}: unreadable ({err}); delete it and run the download stage again") from None
    return digest.hexdigest()


def verify(path: Path, expected_sha256: str, *, gunzip: bool = False) -> None:
    """Raise ChecksumError unless the (optionally decompressed) content has the published sha256."""
    what = "decompressed content" if gunzip else "content"
    try:
        actual = sha256_of(path, gunzip=gunzip)
    except ChecksumError as err:
        raise ChecksumError(f"{err}\n  expected sha256 of the {what}: {expected_sha256}") from None
    if actual != expected_sha256:
        raise ChecksumError(
            f"{path}: checksum mismatch, the file is corrupt or truncated\n"
            f"  expected sha256 of the {what}: {expected_sha256}\n"
            f"  actual:                         {actual}"
        )


def _stream(url: str, dest: Path, *, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "lessonflow"})
    with urllib.request.urlopen(request, timeout=timeout) as response, dest.open("wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
        if total is not None and out.tell() != total:
            raise DownloadError(f"{url}: connection closed after {out.tell()} of {total} bytes")


def download(urls: Iterable[str], final: Path, *, sha256: str | None, gunzip: bool = False,
             rounds: int = 3, backoff: float = 2.0, timeout: float = 60.0) -> Path:
    """Fetch ``final`` from the first URL that serves the right bytes.

    Every URL is tried in order; a whole failed round is retried after an exponential
    back-off (``lessonflow.retry``), because most failures (rate limits, resets) are
    transient. ``sha256=None`` is for containers built on request (a GitHub archive) whose
    bytes have no stable checksum: the caller must then verify the content it unpacks.
    """
    urls = list(urls)
    failures: list[str] = []

    def one_round() -> Path:
        for url in urls:
            tmp = final
            try:  # the error leaves the ``with``, so a failed attempt is thrown away, never renamed into place
                with atomic_path(final) as tmp:
                    _stream(url, tmp, timeout=timeout)
                    if sha256 is not None:
                        verify(tmp, sha256, gunzip=gunzip)
            except (OSError, ValueError, http.client.HTTPException, DownloadError, ChecksumError) as err:
                failures.append(f"{url}: {err}".replace(str(tmp), final.name))
                log.warning("download failed, trying the next mirror: %s", failures[-1])
                continue
            log.info("downloaded %s from %s", final.name, url)
            return final
        raise DownloadError(f"could not download {final.name} from any mirror:\n  " + "\n  ".join(failures))

    return retrying(retry_if_exception_type(DownloadError), first=backoff, attempts=rounds, log=log.warning)(one_round)


def copy_verified(source: Path, final: Path, *, sha256: str, gunzip: bool = False) -> Path:
    """Take a file from a local mirror, refusing it (and leaving nothing behind) if it is corrupt."""
    if not source.is_file():
        raise FileNotFoundError(f"{source}: not found in the data mirror")
    verify(source, sha256, gunzip=gunzip)
    with atomic_path(final) as tmp:
        shutil.copyfile(source, tmp)
        verify(tmp, sha256, gunzip=gunzip)
    return final


def fetch_file(source: str, mirror_path: str, urls: Iterable[str], final: Path, *, sha256: str) -> Path:
    """``final`` from the data mirror's ``mirror_path`` (source ``mirror``) or else the first of ``urls``
    serving it, in either case refused unless its sha256 is the one pinned."""
    if source == "mirror":
        return copy_verified(mirror_root() / mirror_path, final, sha256=sha256)
    return download(urls, final, sha256=sha256)
