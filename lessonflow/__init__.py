"""lessonflow: a zoo of deep-learning lessons rebuilt as one DVC pipeline.

``lessonflow.load("mnist-cnn", rev=None)`` returns a lesson's trained model (lessonflow/loader.py). It is
imported on first use, so the stages, which import this package's modules, never run it.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "load":
        from lessonflow.loader import load

        return load
    raise AttributeError(f"module 'lessonflow' has no attribute {name!r}")
