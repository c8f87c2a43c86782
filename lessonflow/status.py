"""``lessonflow status``: which stages the next ``dvc repro`` will rebuild, before it runs.

A stage's code dep is a fingerprint file that ``check`` rewrites during the build, so after an edit
to a module ``dvc status`` names only ``check`` (and after a params edit not ``evaluate@``, whose
fingerprint holds its params' digest). This adds, to what DVC's own status reports, every
stage whose fingerprint the next ``check`` will change, so a user sees the whole rebuild up front.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lessonflow import fingerprints
from lessonflow.params import load_params
from lessonflow.paths import Layout


def stale(root: Path) -> dict[str, list[Any]]:
    """Stage -> why it will rerun, in pipeline order, as ``dvc status --json`` says it plus the code it runs."""
    from dvc.repo import Repo

    layout = Layout(root)
    params = load_params(layout.params)
    digests = {fingerprints.path(name) for name in fingerprints.digested_params(params)}
    changed = {fingerprints.path(name) for name in fingerprints.outdated(layout, params)}
    with Repo(str(root)) as repo:
        reported = repo.status()
        found: dict[str, list[Any]] = {}
        for stage in repo.index.stages:
            reasons = list(reported.get(stage.addressing, []))
            code = sorted(dep.def_path for dep in stage.deps if dep.def_path in changed)
            if code:
                reasons.append({"changed code or params" if digests.intersection(code) else "changed code": code})
            if reasons:
                found[stage.addressing] = reasons
    return found


def lines(found: dict[str, list[Any]]) -> list[str]:
    """The same, as ``dvc status`` prints it: each stage, then each kind of change with its paths."""
    if not found:
        return ["Nothing to rebuild: data, params and code are as the last build left them."]
    out = []
    for stage, reasons in found.items():
        out.append(f"{stage}:")
        for reason in reasons:
            if not isinstance(reason, dict):
                out.append(f"\t{reason}")
                continue
            for kind, what in reason.items():
                named = [f"{path} ({how})" for path, how in what.items()] if isinstance(what, dict) else list(what)
                out.append(f"\t{kind}: {', '.join(named)}")
    return out
