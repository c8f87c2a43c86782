"""Writing ``dvc.yaml`` from params.yaml and the code's imports (``lessonflow dvc-yaml``).

Each stage depends on exactly the modules it runs, through one fingerprint file that ``check``
writes (``fingerprints.py``): DVC rewrites the whole lock after every stage, and one dep per stage
instead of one per module keeps that lock small. ``foreach`` items say which dataset and lesson kind
each stage works on, so a reader of one stage sees its fingerprint and its data. Each top-level
section of the file is one function. The ``check`` stage fails when the file is not what this
module would write now.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lessonflow import fingerprints
from lessonflow.paths import Layout
from lessonflow.registry import artifacts

CHECK_RECORD = "results/check.json"
PARAMS = "params.yaml"
PREDICTIONS = "results/{}/eval/outputs/predictions.npz"
LESSON_ITEMS = "lesson_stages"  # a name params.yaml does not use: DVC reads both as variables

HEADER = """\
# Written by `lessonflow dvc-yaml` from params.yaml and the imports of the code (lessonflow/dvcfile.py):
# edit those and run it again; the `check` stage stops `dvc repro` while this file is out of date.
#
# One download/prepare per dataset, one train/evaluate per lesson, one stage per ensemble, a report.
# Each stage depends on its data, its params and the project modules it runs, the last through one
# file of fingerprints/ (each module's md5, listed; evaluate's and the report's also a digest of the
# params they read): `check` depends on every module and on params.yaml and rewrites those files, and
# only the ones whose inputs changed change, so an edit rebuilds exactly the stages that run it
# (`lessonflow status` lists them before `dvc repro`). A train stage also depends on its lesson's
# `upstream`: a transfer lesson's backbone model, else its own data again. Outputs are `persist` and
# written atomically by the stages, so a failed or killed stage leaves the previous results in
# place. Metrics files and per-epoch curves are small and `cache: false`: git tracks them, so any
# clone compares commits (`dvc metrics diff`, `lessonflow compare`) without building or pulling;
# models, prepared data and images stay in DVC's cache and travel by `dvc push`/`pull`.
"""


def _code(name: str) -> str:
    return fingerprints.path(name)


def upstream(lesson: Any) -> str:
    """What a lesson's training reads besides its code: a transfer lesson's backbone model (on the full
    profile its ImageNet weights file), else its data.

    DVC cannot give one stage of a ``foreach`` more deps than another, so every train stage lists
    this one: a lesson without a ``backbone:`` repeats its prepared data, a dep it has anyway.
    """
    backbone, weights = getattr(lesson, "backbone", None), getattr(lesson, "weights_file", None)
    if weights:
        return f"data/raw/{lesson.dataset}/{weights}"
    return f"models/{backbone}" if backbone else f"data/prepared/{lesson.dataset}.pt"


def used_datasets(params: Any) -> list[str]:
    """The datasets some lesson reads on this profile (the transfer lessons' photos only under ``full``)."""
    used = {lesson.dataset for lesson in params.lessons.values()}
    return [name for name in params.datasets if name in used]


def variables(params: Any) -> list[dict[str, Any]]:
    """The ``vars:`` section: each lesson's dataset, kind and upstream, which its train and evaluate stages read."""
    return [{LESSON_ITEMS: {lid: {"dataset": lesson.dataset, "kind": lesson.kind, "upstream": upstream(lesson)}
                            for lid, lesson in params.lessons.items()}}]


def _lesson_stage(verb: str) -> dict[str, Any]:
    """``train`` or ``evaluate``: one stage per lesson (``vars``), with its lesson's data and code.

    ``train@`` depends on its kind's modules and on its lesson's params as DVC params, so a stage run
    alone still sees a params edit; ``evaluate@`` on its lesson's fingerprint, which holds its kind's
    modules and a digest of the same params: one lock entry instead of every key a second time.
    """
    items = f"${{{LESSON_ITEMS}}}"
    if verb == "train":
        return {"foreach": items, "do": {
            "cmd": "python -m stages.train ${key}",
            "deps": [_code("train-${item.kind}"), "data/prepared/${item.dataset}.pt", "${item.upstream}"],
            "params": ["device", "lessons.${key}"],
            "outs": [{"models/${key}": {"persist": True}}],
            "metrics": [{"results/${key}/train/metrics.json": {"persist": True, "cache": False}}],
            "plots": [{"results/${key}/train/plots": {"persist": True, "cache": False, "x": "step"}}],
        }}
    # evaluate copies facts from the train log without depending on it: each of them but the training's
    # duration (which it leaves there) follows from the weights, params, data and code it depends on, and
    # a dependency on the duration would evaluate an identical model again after every retraining
    return {"foreach": items, "do": {
        "cmd": "python -m stages.evaluate ${key}",
        "deps": [_code(f"{fingerprints.EVALUATE}-${{key}}"), "data/prepared/${item.dataset}.pt", "models/${key}"],
        "outs": [{"results/${key}/eval/outputs": {"persist": True}}],
        "metrics": [{"results/${key}/eval/metrics.json": {"persist": True, "cache": False}}],
        "plots": [{"results/${key}/eval/plots": {"persist": True}}],
    }}


def _dataset_stage(verb: str, params: Any) -> dict[str, Any]:
    """``download`` or ``prepare``: one stage per dataset."""
    if verb == "download":
        body = {"cmd": "python -m stages.download ${item}", "deps": [_code("download-${item}")],
                "params": ["profile", "datasets.${item}"], "outs": [{"data/raw/${item}": {"persist": True}}]}
    else:
        body = {"cmd": "python -m stages.prepare ${item}", "deps": [_code("prepare-${item}"), "data/raw/${item}"],
                "params": ["datasets.${item}"], "outs": [{"data/prepared/${item}.pt": {"persist": True}}]}
    return {"foreach": used_datasets(params), "do": body}


def _ensemble_stage(name: str, members: list[str]) -> dict[str, Any]:
    root = f"results/ensemble-{name}"
    return {
        "cmd": f"python -m stages.ensemble {name}",
        "deps": [_code("ensemble"), *(PREDICTIONS.format(member) for member in members)],
        "params": [f"ensembles.{name}"], "outs": [{f"{root}/outputs": {"persist": True}}],
        "metrics": [{f"{root}/metrics.json": {"persist": True, "cache": False}}],
        "plots": [{f"{root}/plots/images": {"persist": True}},
                  {f"{root}/plots/sklearn/confusion_matrix.json": {
                      "persist": True, "template": "confusion", "x": "actual", "y": "predicted"}}],
    }


def stages(params: Any) -> dict[str, Any]:
    """The ``stages:`` section."""
    found: dict[str, Any] = {
        "check": {"cmd": "python -m stages.check", "deps": [PARAMS, *fingerprints.check_modules(params)],
                  "outs": [{CHECK_RECORD: {"persist": True, "cache": False}},
                           {fingerprints.FOLDER: {"persist": True, "cache": False}}]},
        "download": _dataset_stage("download", params),
        "prepare": _dataset_stage("prepare", params),
        "train": _lesson_stage("train"),
        "evaluate": _lesson_stage("evaluate"),
    }
    for name, group in params.ensembles.items():
        found[f"ensemble-{name}"] = _ensemble_stage(name, group.members)
    found["report"] = {"cmd": "python -m stages.report", "deps": [_code("report"), "results"],
                       "outs": [{"reports": {"persist": True}}]}
    return found


def pipeline(params: Any) -> dict[str, Any]:
    """Every top-level section of dvc.yaml, as DVC reads them: a new section is one more entry here.

    The top-level ``params`` makes ``dvc params diff`` and ``dvc exp show`` show every key of params.yaml,
    the ones stages reach through a fingerprint's digest (the report's, ``evaluate@``'s) included.
    """
    return {"vars": variables(params), "params": [PARAMS], "stages": stages(params)}


def model_registry(params: Any) -> dict[str, Any]:
    """The ``artifacts:`` section (lessonflow/registry.py): each torch model by name, for ``dvc artifacts get``."""
    return {"artifacts": artifacts(params)}


def render(params: Any) -> str:
    return HEADER + yaml.safe_dump({**pipeline(params), **model_registry(params)}, sort_keys=False, width=110,
                                   default_flow_style=None)


def stale(layout: Layout, params: Any) -> str | None:
    """Why dvc.yaml is not what params.yaml and the code give now, or None when it is."""
    path = layout.root / "dvc.yaml"
    if not path.is_file():
        return "dvc.yaml is missing"
    if path.read_text() != render(params):
        return ("dvc.yaml is out of date with params.yaml or the code's imports (a lesson, dataset or ensemble "
                "added or removed, the profile switched, or an import changed): run `lessonflow dvc-yaml`, "
                "then `dvc repro` again")
    return None


def write(layout: Layout, params: Any) -> Path:
    path = layout.root / "dvc.yaml"
    path.write_text(render(params))
    return path
