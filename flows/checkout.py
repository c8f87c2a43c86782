"""One run at a time on a checkout: a lock every flow run takes before it touches the workspace.

Prefect's deployment concurrency limits keep two runs of one deployment apart, but not two
deployments, nor a deployment and ``lessonflow flow run`` typed by hand, and DVC's own lock is
released while a stage's command runs. So every run holds an exclusive ``flock`` on a file in
the checkout's ``.dvc/tmp`` for its whole length. The kernel releases it when the holder's
process ends, however it ends (SIGKILL included): a crash never leaves a stale lock behind. The
file names the holder, so a run that has to wait says for whom.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = Path(".dvc") / "tmp" / "lessonflow-run.lock"


def _describe(holder: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(holder.get("since", 0)))
    return f"{holder.get('run', 'a run')} (pid {holder.get('pid', '?')}, since {started})"


def holder(root: Path) -> str | None:
    """Who holds the checkout now, or None when no run does."""
    path = root / LOCK_FILE
    if not path.exists():
        return None
    with path.open("r") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _describe(json.loads(fh.read() or "{}"))
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


@contextmanager
def hold(root: Path, run: str, log: Callable[[str], None]) -> Iterator[None]:
    """Hold the checkout for ``run``; if another run holds it, say so once and wait for it to end."""
    path = root / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            current = json.loads(os.pread(fd, 4096, 0) or b"{}")
            log(f"{root} is busy: {_describe(current)} is running on it; waiting for it to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
            log(f"{root} is free: starting")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"run": run, "pid": os.getpid(), "since": time.time()}).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
