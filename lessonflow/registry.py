"""The model registry: DVC's ``artifacts:`` section of dvc.yaml, one entry per lesson that trains a torch model.

DVC resolves an artifact by name at any git revision, so ``dvc artifacts get <repo> mnist-cnn --rev <commit>``
fetches that commit's trained model through the DVC remote, and ``lessonflow.load`` rebuilds it in Python.
Lessons of the other kinds save fitted NumPy values or curves, not a module ``load`` could rebuild.
"""

from __future__ import annotations

from typing import Any

from lessonflow.catalogue import describe

# The kinds whose models/<id>/model.pt is the state dict of a zoo model named by the lesson's ``model:``.
TORCH_MODEL_KINDS = ("autoencoder", "backbone", "classifier", "fast_cifar", "gan", "seq2seq", "stock", "tabular", "transfer")


def registered(params: Any) -> list[str]:
    """The lessons with a registry entry, in params order."""
    return [lesson_id for lesson_id, lesson in params.lessons.items() if lesson.kind in TORCH_MODEL_KINDS]


def artifacts(params: Any) -> dict[str, dict[str, Any]]:
    """``artifacts:`` entries as dvc.yaml spells them (``path``, ``type``, ``desc``, ``labels``)."""
    entries = {}
    for lesson_id in registered(params):
        lesson = params.lessons[lesson_id]
        entries[lesson_id] = {"path": f"models/{lesson_id}/model.pt", "type": "model",
                              "desc": describe(lesson_id, lesson),
                              "labels": [f"kind:{lesson.kind}", f"dataset:{lesson.dataset}"]}
    return entries
