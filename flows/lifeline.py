"""A served run lives and dies with ``lessonflow schedule``.

Prefect runs each served flow run in a child process, and the schedule's local Prefect server
is a child too; a child outlives a parent killed with SIGKILL. An orphaned run would go on
training with nobody to report to, and an orphaned server would hold the schedule's database.
So the server is started with the kernel's parent-death signal, and a served run watches its
parent: when the serving process is gone, the run stops its stages (their outputs are written
atomically, training resumes from its checkpoint next time) and exits, releasing the checkout.
"""

from __future__ import annotations

import contextvars
import ctypes
import os
import signal
import threading
import time
from collections.abc import Callable

SERVED_BY_ENV = "LESSONFLOW_SERVED_BY"  # the serving process's pid, inherited by its runs
POLL_S = 1.0
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """For ``subprocess.Popen(preexec_fn=…)``: the child gets SIGTERM when the process that started it dies (Linux)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def serving_pid() -> int | None:
    value = os.environ.get(SERVED_BY_ENV)
    return int(value) if value else None


def watch(on_orphaned: Callable[[], None]) -> None:
    """Call ``on_orphaned`` (in a daemon thread) once this run's serving process has died.

    It runs in the caller's context: Prefect's settings (which server to report to) live in
    context variables, and a bare thread would start a throw-away server of its own instead.
    """
    parent = serving_pid()
    if parent is None or os.getppid() != parent:
        return  # a run by hand, or one a Prefect worker started: not ours to watch

    def poll() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_S)
        on_orphaned()

    context = contextvars.copy_context()
    threading.Thread(target=context.run, args=(poll,), name="lessonflow-lifeline", daemon=True).start()
