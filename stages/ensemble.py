"""``ensemble-<name>``: combine the members' saved class probabilities (see ``lessonflow/ensemble.py``).

DVC cannot expand a params list into ``deps``, so ``lessonflow dvc-yaml`` writes each ensemble's
members' prediction files into dvc.yaml; this stage refuses to run when they disagree with
``ensembles.<name>.members`` (run ``lessonflow dvc-yaml`` after editing the members).
"""

from pathlib import Path

import yaml
from tabulate import tabulate

from lessonflow.ensemble import combine, load_predictions, table_rows
from lessonflow.figures import accuracy_bars
from lessonflow.records import live_log, outputs_of
from lessonflow.schema import SAFE_LOADER, ParamsError
from stages import stage_main

PREDICTIONS_SUFFIX = "/eval/outputs/predictions.npz"


def check_declared(root: Path, name: str, members: list[str]) -> None:
    stage = f"ensemble-{name}"
    stages = yaml.load((root / "dvc.yaml").read_text(), Loader=SAFE_LOADER).get("stages", {})
    if stage not in stages:
        raise ParamsError(f"ensembles.{name}: dvc.yaml has no stage {stage!r}; run `lessonflow dvc-yaml`")
    declared = {dep.removeprefix("results/").removesuffix(PREDICTIONS_SUFFIX)
                for dep in stages[stage].get("deps", []) if dep.endswith(PREDICTIONS_SUFFIX)}
    if declared != set(members):
        raise ParamsError(f"ensembles.{name}.members {sorted(members)} differ from the prediction files that "
                          f"dvc.yaml stage {stage!r} depends on {sorted(declared)}: run `lessonflow dvc-yaml`")


def ensemble(name, params, layout):
    """Combine the members' test probabilities by vote, average, validation-fitted weighted average (and a fixed blend)."""
    group = params.ensembles[name]
    members = group.members
    check_declared(layout.root, name, members)
    predictions = {member: load_predictions(layout.predictions(member)) for member in members}
    metrics, predicted = combine(predictions, group.blend)
    rows = table_rows(metrics)
    with live_log(layout.ensemble_log(name)) as live:
        live.summary.update(metrics)
        (outputs_of(live) / "table.md").write_text(
            tabulate(rows, headers=["", "model", "test accuracy", "weight"], tablefmt="github", floatfmt=".4f") + "\n")
        live.log_image("accuracy.png", accuracy_bars([row[:3] for row in rows], f"ensemble-{name}: test accuracy"))
        live.log_sklearn_plot("confusion_matrix", predictions[members[0]].y_test, predicted["weighted_average"],
                              name="confusion_matrix.json")
    print(f"ensemble-{name}: weighted {metrics['test_accuracy']:.4f}, best member {metrics['best_member']} "
          f"{metrics['best_member_accuracy']:.4f}, oracle {metrics['oracle']:.4f}")


if __name__ == "__main__":
    stage_main("ensemble", "ensembles", ensemble)
