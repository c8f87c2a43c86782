"""The lesson kinds: one module per kind, named by a lesson's ``kind:`` in params.yaml.

Adding a lesson that reuses a kind is a params edit; a new kind is one module here that defines
``KIND``. A stage imports only its own lesson's kind module (``load``), so editing one kind rebuilds
only the lessons of that kind.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lessonflow.schema import ParamsError, unknown

KINDS = tuple(sorted(module.name for module in pkgutil.iter_modules(__path__)))


@dataclass(frozen=True)
class LessonKind:
    schema: type  # a lessonflow.schema.LessonBase subclass: the keys this kind accepts
    train: Callable[[Any], None]  # given a lessonflow.lessons.LessonRun
    evaluate: Callable[[Any], dict[str, Any]]


def load(name: Any) -> LessonKind:
    if name not in KINDS:
        raise ParamsError(f"kind: {unknown('lesson kind', str(name), KINDS)}")
    return importlib.import_module(f"{__name__}.{name}").KIND
