"""The lesson kinds: one module per kind, named by a lesson's ``kind:`` in params.yaml.

Adding a lesson that reuses a kind is a params edit; a new kind is one module here (see
``lessonflow/contract.py``) and one line in ``KINDS``. Each entry imports its module only when
called, so a stage runs only its own lesson's kind and editing one kind rebuilds only its lessons
(``lessonflow/codedeps.py`` follows the entry of each lesson's kind alone).
"""

from __future__ import annotations

from collections.abc import Callable

from lessonflow.contract import Kind
from lessonflow.schema import ParamsError, unknown


def _autoencoder() -> Kind:
    from lessonflow.kinds import autoencoder
    return autoencoder


def _backbone() -> Kind:
    from lessonflow.kinds import backbone
    return backbone


def _classifier() -> Kind:
    from lessonflow.kinds import classifier
    return classifier


def _fast_cifar() -> Kind:
    from lessonflow.kinds import fast_cifar
    return fast_cifar


def _foundation_descent() -> Kind:
    from lessonflow.kinds import foundation_descent
    return foundation_descent


def _foundation_grid() -> Kind:
    from lessonflow.kinds import foundation_grid
    return foundation_grid


def _foundation_linear() -> Kind:
    from lessonflow.kinds import foundation_linear
    return foundation_linear


def _gan() -> Kind:
    from lessonflow.kinds import gan
    return gan


def _mini_framework() -> Kind:
    from lessonflow.kinds import mini_framework
    return mini_framework


def _rnn_scratch() -> Kind:
    from lessonflow.kinds import rnn_scratch
    return rnn_scratch


def _scratch_classifier() -> Kind:
    from lessonflow.kinds import scratch_classifier
    return scratch_classifier


def _scratch_line() -> Kind:
    from lessonflow.kinds import scratch_line
    return scratch_line


def _seq2seq() -> Kind:
    from lessonflow.kinds import seq2seq
    return seq2seq


def _stock() -> Kind:
    from lessonflow.kinds import stock
    return stock


def _style_transfer() -> Kind:
    from lessonflow.kinds import style_transfer
    return style_transfer


def _tabular() -> Kind:
    from lessonflow.kinds import tabular
    return tabular


def _transfer() -> Kind:
    from lessonflow.kinds import transfer
    return transfer


KINDS: dict[str, Callable[[], Kind]] = {
    "autoencoder": _autoencoder, "classifier": _classifier, "fast_cifar": _fast_cifar,
    "foundation_descent": _foundation_descent, "foundation_grid": _foundation_grid,
    "foundation_linear": _foundation_linear, "gan": _gan, "mini_framework": _mini_framework,
    "scratch_classifier": _scratch_classifier, "scratch_line": _scratch_line, "stock": _stock, "tabular": _tabular,
    "style_transfer": _style_transfer,
    "rnn_scratch": _rnn_scratch, "seq2seq": _seq2seq,
    "backbone": _backbone, "transfer": _transfer,
}


def kind_of(name: object) -> Kind:
    """The module of the kind called ``name``, or an error listing the kinds there are."""
    if name not in KINDS:
        raise ParamsError(f"kind: {unknown('lesson kind', str(name), KINDS)}")
    return KINDS[str(name)]()
