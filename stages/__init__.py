"""Thin DVC stage entry points: ``python -m stages.<verb> <id>``.

Each stage checks ``params.yaml`` (in full for the entry it works on) before any work, and prints an
error a user can fix (bad params, missing or corrupt data) as one line with exit status 1, not a
traceback. ``python -m stages.<verb>`` imports this package first, so its first lines can stop an
interpreter that lacks the project's packages, with one line saying how to get the right one, and
hand the run to the warm server (``lessonflow/warm.py``) before anything below imports torch.
"""

from __future__ import annotations

import sys

from lessonflow import interpreter, warm

if sys.argv[:1] == ["-m"]:  # this package is being located by `python -m stages.<verb>`
    interpreter.require_project_interpreter()
    warm.hand_off()

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
from collections.abc import Callable  # noqa: E402

from lessonflow.errors import ChecksumError, DivergedError, DownloadError, ParamsError  # noqa: E402
from lessonflow.params import Params, load_params  # noqa: E402
from lessonflow.paths import Layout  # noqa: E402

USER_ERRORS = (ParamsError, ChecksumError, DownloadError, DivergedError, FileNotFoundError, RuntimeError, ValueError)


def stage_main(verb: str, section: str, action: Callable[..., object]) -> None:
    """Parse ``<id>``, check it against ``params.<section>``, run ``action(id, params, layout)``."""
    parser = argparse.ArgumentParser(prog=f"python -m stages.{verb}", description=action.__doc__)
    parser.add_argument("id", help=f"a key of '{section}:' in params.yaml")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    layout = Layout.here()
    try:
        action(args.id, entry_params(layout, section, args.id), layout)
    except USER_ERRORS as err:
        print(f"{verb}@{args.id} failed: {err}", file=sys.stderr)
        sys.exit(1)
    exit_without_teardown()


def entry_params(layout: Layout, section: str, key: str) -> Params:
    """params.yaml with ``<section>.<key>`` checked in full: only its lesson's kind or its dataset is imported."""
    params = load_params(layout.params, lessons=[key] if section == "lessons" else [],
                         datasets=[key] if section == "datasets" else [])
    if key not in getattr(params, section):
        raise ParamsError(f"{section}: no entry {key!r}; known: {', '.join(sorted(getattr(params, section)))}")
    return params


def exit_without_teardown() -> None:
    """End the process as soon as the stage's work is done.

    Tearing down an interpreter that has loaded torch is slow, and every stage process would pay
    it. Nothing is lost by skipping it: every output was written to a temporary name, closed and
    renamed, and logging and the standard streams are flushed here.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
