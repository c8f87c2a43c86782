"""Writing ``dvc.yaml`` from params.yaml and the code's imports (``lessonflow dvc-yaml``).

DVC can expand a params dict into stages (``foreach``) but not a list into a stage's deps, and each
lesson's stages run a different set of modules. So this module writes the file: one ``foreach``
item per dataset and lesson carrying the exact modules its stage imports (``codedeps.closure``),
referenced by position; a shorter list repeats its last module, which DVC records twice and
counts once. The ``check`` stage fails when the file is not what this module would write now.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lessonflow.codedeps import closure, dataset_module, kind_module
from lessonflow.paths import Layout
from lessonflow.registry import artifacts

CHECK_RECORD = "results/check.json"
VERBS = ("check", "download", "prepare", "train", "evaluate", "ensemble", "report")
PREDICTIONS = "results/{}/eval/outputs/predictions.npz"

HEADER = """\
# Written by `lessonflow dvc-yaml` from params.yaml and the imports of the code (lessonflow/dvcfile.py):
# edit those and run it again; the `check` stage stops `dvc repro` while this file is out of date.
#
# One download/prepare per dataset, one train/evaluate per lesson, one stage per ensemble, a report.
# Each stage depends on exactly the project modules it runs (`code:` of its item), its data and its
# params. Outputs are `persist` and written atomically by the stages, so a failed or killed stage
# leaves the previous results in place. Metrics files and per-epoch curves are small and
# `cache: false`: git tracks them, so any clone compares commits (`dvc metrics diff`,
# `lessonflow compare`) without building or pulling; models, prepared data and images stay in
# DVC's cache and travel by `dvc push`/`pull`.
"""


def stage_code(params: Any) -> dict[str, dict[str, list[str]]]:
    """Stage group -> item -> the modules its stage imports (the ones it loads by name included)."""
    lessons = params.lessons
    return {
        # the check reads every module a stage can run, to see whether this file is still current
        "check": {"": closure([*(f"stages.{verb}" for verb in VERBS), *map(dataset_module, params.datasets),
                               *{kind_module(lesson.kind) for lesson in lessons.values()}])},
        "download": {name: closure(["stages.download", dataset_module(name)]) for name in params.datasets},
        "prepare": {name: closure(["stages.prepare", dataset_module(name)]) for name in params.datasets},
        "train": {lid: closure(["stages.train", kind_module(lesson.kind)]) for lid, lesson in lessons.items()},
        "evaluate": {lid: closure(["stages.evaluate", kind_module(lesson.kind)]) for lid, lesson in lessons.items()},
        "ensemble": {"": closure(["stages.ensemble"])},
        "report": {"": closure(["stages.report", *{kind_module(lesson.kind) for lesson in lessons.values()}])},
    }


def _items(code: dict[str, list[str]], extra: dict[str, dict[str, Any]] | None = None) -> tuple[dict, list[str]]:
    """``foreach`` items padded to one length, and the ``${item.code[i]}`` deps that read them."""
    width = max(len(modules) for modules in code.values())
    items = {key: {**(extra or {}).get(key, {}), "code": modules + modules[-1:] * (width - len(modules))}
             for key, modules in code.items()}
    return items, [f"${{item.code[{index}]}}" for index in range(width)]


def _lesson_group(verb: str, code: dict[str, list[str]], params: Any) -> dict[str, Any]:
    items, code_deps = _items(code, {lid: {"dataset": lesson.dataset} for lid, lesson in params.lessons.items()})
    deps = [*code_deps, "data/prepared/${item.dataset}.pt"]
    if verb == "train":
        return {"foreach": items, "do": {
            "cmd": "python -m stages.train ${key}", "deps": deps, "params": ["device", "lessons.${key}"],
            "outs": [{"models/${key}": {"persist": True}}],
            "metrics": [{"results/${key}/train/metrics.json": {"persist": True, "cache": False}}],
            "plots": [{"results/${key}/train/plots": {"persist": True, "cache": False, "x": "step"}}],
        }}
    return {"foreach": items, "do": {
        "cmd": "python -m stages.evaluate ${key}",
        "deps": [*deps, "models/${key}", "results/${key}/train/metrics.json"], "params": ["device", "lessons.${key}"],
        "outs": [{"results/${key}/eval/outputs": {"persist": True}}],
        "metrics": [{"results/${key}/eval/metrics.json": {"persist": True, "cache": False}}],
        "plots": [{"results/${key}/eval/plots": {"persist": True}}],
    }}


def pipeline(params: Any) -> dict[str, Any]:
    """The stages of dvc.yaml, as DVC reads them."""
    code = stage_code(params)
    downloads, download_deps = _items(code["download"])
    prepares, prepare_deps = _items(code["prepare"])
    stages: dict[str, Any] = {
        "check": {"cmd": "python -m stages.check", "deps": code["check"][""], "params": [{"params.yaml": None}],
                  "outs": [{CHECK_RECORD: {"persist": True, "cache": False}}]},
        "download": {"foreach": downloads, "do": {
            "cmd": "python -m stages.download ${key}", "deps": [*download_deps, CHECK_RECORD],
            "params": ["profile", "datasets.${key}"], "outs": [{"data/raw/${key}": {"persist": True}}]}},
        "prepare": {"foreach": prepares, "do": {
            "cmd": "python -m stages.prepare ${key}", "deps": [*prepare_deps, "data/raw/${key}"],
            "params": ["datasets.${key}"], "outs": [{"data/prepared/${key}.pt": {"persist": True}}]}},
        "train": _lesson_group("train", code["train"], params),
        "evaluate": _lesson_group("evaluate", code["evaluate"], params),
    }
    for name, group in params.ensembles.items():
        root = f"results/ensemble-{name}"
        stages[f"ensemble-{name}"] = {
            "cmd": f"python -m stages.ensemble {name}",
            "deps": [*code["ensemble"][""], *(PREDICTIONS.format(member) for member in group.members)],
            "params": [f"ensembles.{name}"], "outs": [{f"{root}/outputs": {"persist": True}}],
            "metrics": [{f"{root}/metrics.json": {"persist": True, "cache": False}}],
            "plots": [{f"{root}/plots/images": {"persist": True}},
                      {f"{root}/plots/sklearn/confusion_matrix.json": {
                          "persist": True, "template": "confusion", "x": "actual", "y": "predicted"}}],
        }
    stages["report"] = {"cmd": "python -m stages.report", "deps": [*code["report"][""], "results"],
                        "params": ["profile", "lessons", "ensembles"], "outs": ["reports"]}
    return {"stages": stages}


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
                "added or removed, or an import changed): run `lessonflow dvc-yaml`, then `dvc repro` again")
    return None


def write(layout: Layout, params: Any) -> Path:
    path = layout.root / "dvc.yaml"
    path.write_text(render(params))
    return path
