"""`benchmarks/overhead.py`'s floor (issue 16) is the project's pipeline with only its commands replaced: the same
stages, deps, params and outs as DVC resolves them from the generated dvc.yaml, so its timings are DVC's own."""

from __future__ import annotations

import sys

import yaml

from conftest import ROOT, commit_all

sys.path.insert(0, str(ROOT / "benchmarks"))
from overhead import FLOOR_SCRIPT, build_floor, copy_project, declared_outs, shape, shape_differences  # noqa: E402


def test_the_floor_has_the_projects_stages_deps_params_and_outs_and_commands_that_only_copy_outs(tmp_path):
    project = copy_project(tmp_path / "project")
    floor = build_floor(tmp_path / "floor", store=project)
    ours, theirs = shape(project), shape(floor)
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    variables = {name: value for entry in pipeline.get("vars", []) for name, value in entry.items()}
    items = [group["foreach"] for group in pipeline["stages"].values() if "foreach" in group]
    singles = sum("foreach" not in group for group in pipeline["stages"].values())
    assert len(ours) == singles + sum(len(variables[each[2:-1]] if isinstance(each, str) else each) for each in items)
    assert shape_differences(ours, theirs) == []
    for name, stage in yaml.safe_load((floor / "dvc.yaml").read_text())["stages"].items():
        body = stage.get("do", stage)
        assert body["cmd"] == " ".join(["sh", FLOOR_SCRIPT, *declared_outs(body)]), name
        assert "python" not in body["cmd"]

    # a floor that lost a dep, a param or a stage is caught
    pipeline = yaml.safe_load((floor / "dvc.yaml").read_text())
    pipeline["stages"]["train"]["do"]["deps"].pop()
    pipeline["stages"]["download"]["do"]["params"].pop()
    del pipeline["stages"][next(name for name in pipeline["stages"] if name.startswith("ensemble-"))]
    (floor / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    commit_all(floor, "a floor of another shape")
    problems = shape_differences(ours, shape(floor))
    assert any(problem.startswith("train@") and "deps differ" in problem for problem in problems)
    assert any(problem.startswith("download@") and "params differ" in problem for problem in problems)
    assert any(problem.startswith("stage ensemble-") and "only in the project" in problem for problem in problems)
