"""The pipeline's overhead against DVC's own floor: `bench.py --only overhead`.

The *floor* is a copy of the project whose ``dvc.yaml`` keeps every stage's deps, params and outs and
replaces each command by a copy of its outputs from the built project (no Python, no work), so its
time is what DVC itself needs for this pipeline; the *old floor* does the same for ``dvc.yaml`` as it
was at ``OLD_SHAPE``. Timed in one run, each beside the floors: the default build split by where its
time goes (the warm server's per-stage records), ``dvc repro`` and ``dvc status`` with nothing to
do, and one lesson's ``seed`` edited then rebuilt, its training time subtracted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import BIN, commit_all, copy_project, project_env  # noqa: E402

from lessonflow.seeds import KEY as SEEDS_KEY  # noqa: E402

FLOOR_SCRIPT = "floor.sh"
OUT_KEYS = ("outs", "metrics", "plots")
GOALS = {"noop_repro": 1.2, "edit_rebuild": 2.0, "build_share_outside_training": 0.35,
         "lock_lines": 2000, "bookkeeping_seconds": 25, "edit_outside_training_seconds": 12}
OLD_SHAPE = "505b279"  # the last commit whose dvc.yaml listed every module of a stage as a dep (issue 27)
FLOORS = ("floor", "old floor")
CODE = ("lessonflow", "stages")


def summary(values: list[float]) -> dict:
    return {"runs": [round(v, 3) for v in values], "median": round(statistics.median(values), 3),
            "spread": round(max(values) - min(values), 3)}


# ---------------------------------------------------------------- the floor

def declared_outs(stage: dict) -> list[str]:
    """Every path a stage definition declares as its output (outs, metrics and plots alike)."""
    return [next(iter(out)) if isinstance(out, dict) else out for key in OUT_KEYS for out in stage.get(key, [])]


def floor_pipeline(pipeline: dict) -> dict:
    """The project's dvc.yaml with each command replaced by copying the stage's own declared outs."""
    floor = json.loads(json.dumps(pipeline))  # a deep copy
    for stage in floor["stages"].values():
        body = stage.get("do", stage)
        body["cmd"] = " ".join(["sh", FLOOR_SCRIPT, *declared_outs(body)])
    return floor


def floor_script(store: Path) -> str:
    return "\n".join([
        "# the floor's only command: put each declared output in place as the project's build wrote it",
        f"store='{store}'",
        'for out; do',
        '  rm -rf "$out"',
        '  case "$out" in */*) mkdir -p "${out%/*}" ;; esac',
        '  cp -a "$store/$out" "$out"',
        'done', ""])


def build_floor(dest: Path, store: Path, dvc_yaml: str | None = None, code_rev: str | None = None) -> Path:
    """A git repo holding the project's files, its dvc.yaml (or ``dvc_yaml``, another shape of it) made into the
    floor's, outputs copied from ``store``; with ``code_rev``, the modules as of that commit, which that shape
    names (a module since renamed is one of its deps)."""
    repo = copy_project(dest)
    if code_rev:
        for folder in CODE:
            shutil.rmtree(repo / folder)
        archive = subprocess.run(["git", "archive", code_rev, *CODE], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x"], cwd=repo, input=archive, check=True)
    pipeline = yaml.safe_load(dvc_yaml or (repo / "dvc.yaml").read_text())
    (repo / "dvc.yaml").write_text(yaml.safe_dump(floor_pipeline(pipeline), sort_keys=False, width=110))
    (repo / FLOOR_SCRIPT).write_text(floor_script(store.resolve()))
    commit_all(repo, "the floor: the project's stages, commands that only copy their outputs")
    return repo


def shape(repo: Path) -> dict[str, dict]:
    """Each stage as DVC resolves it: deps, params and outs (with their flags); everything but the command."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        stages = {}
        for stage in dvc_repo.index.stages:
            params = [dep for dep in stage.deps if isinstance(dep, ParamsDependency)]
            stages[stage.name] = {
                "deps": sorted(dep.def_path for dep in stage.deps if not isinstance(dep, ParamsDependency)),
                "params": sorted((dep.def_path, tuple(sorted(dep.params or ()))) for dep in params),
                "outs": sorted((out.def_path, out.persist, out.use_cache, bool(out.metric), bool(out.plot))
                               for out in stage.outs)}
    return stages


def shape_differences(project: dict[str, dict], floor: dict[str, dict]) -> list[str]:
    problems = [f"stage {name} only in the project" for name in project.keys() - floor.keys()]
    problems += [f"stage {name} only in the floor" for name in floor.keys() - project.keys()]
    for name in sorted(project.keys() & floor.keys()):
        problems += [f"{name}: {key} differ" for key in ("deps", "params", "outs")
                     if project[name][key] != floor[name][key]]
    return problems


# ---------------------------------------------------------------- timing

def timed_repro(repo: Path, *args: str, env: dict | None = None) -> dict:
    """``dvc <args>`` (default ``repro``) timed, with the stages it ran and each one's span in DVC's output
    ("Running stage" to "Updating lock file": the command, then DVC hashing and caching its outputs)."""
    started = time.perf_counter()
    process = subprocess.Popen([str(BIN / "dvc"), *(args or ("repro",))], cwd=repo, env=env or project_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    spans, current, tail = {}, None, []
    for line in process.stdout:
        now = time.perf_counter() - started
        tail = [*tail[-40:], line]
        if line.startswith("Running stage '"):
            current = (line.split("'")[1], now)
        elif line.startswith("Updating lock file") and current:
            spans[current[0]] = round(now - current[1], 3)
            current = None
    if process.wait() != 0:
        raise AssertionError(f"dvc {' '.join(args)} in {repo} exited {process.returncode}\n{''.join(tail)}")
    return {"seconds": time.perf_counter() - started, "spans": spans}


def stage_records(path: Path) -> list[dict]:
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    path.unlink(missing_ok=True)
    return records


def train_seconds(repo: Path, lessons: list[str] | None = None, first_seed_only: bool = False) -> dict[str, float]:
    """Each lesson's training time over all its seeds (its log's ``train_seconds`` is its first seed's alone)."""
    found = {}
    for metrics in sorted((repo / "results").glob("*/train/metrics.json")):
        lesson, logged = metrics.parts[-3], json.loads(metrics.read_text())
        per_seed = logged.get(SEEDS_KEY, {}).get("per_seed")
        seconds = sum(per_seed.values()) if per_seed and not first_seed_only else logged.get("train_seconds")
        if isinstance(seconds, (int, float)) and (lessons is None or lesson in lessons):
            found[lesson] = seconds
    return found


def build_split(wall: float, records: list[dict], trained: dict[str, float]) -> dict:
    """The default build's wall time by where it went (seconds)."""
    def child(verbs: tuple[str, ...]) -> float:
        return sum(r["child"] for r in records if r["stage"].split()[0].removeprefix("stages.") in verbs)

    training = sum(trained.values())
    split = {
        "training (train_seconds)": training,
        "train stages around the training loop": child(("train",)) - training,
        "evaluation": child(("evaluate",)),
        "ensembles and report": child(("ensemble", "report")),
        "check, download, prepare": child(("check", "download", "prepare")),
        "stage start-up (interpreter, imports, hand-off)": sum(r["startup"] for r in records),
    }
    split["DVC's own bookkeeping (outside every stage command)"] = wall - sum(split.values())
    return {key: round(value, 2) for key, value in split.items()}


def per_verb(records: list[dict]) -> dict[str, dict]:
    """Each kind of stage: how many ran, and the median start-up and child seconds of one."""
    verbs: dict[str, list[dict]] = {}
    for record in records:
        verbs.setdefault(record["stage"].split()[0].removeprefix("stages."), []).append(record)
    return {verb: {"stages": len(found), "startup_median": round(statistics.median(r["startup"] for r in found), 3),
                   "child_median": round(statistics.median(r["child"] for r in found), 3)}
            for verb, found in verbs.items()}


def set_seed(repo: Path, lesson: str, seed: int) -> None:
    """Edit one param in params.yaml as a user would: ruamel keeps the comments and the rest of the file."""
    from ruamel.yaml import YAML

    handler = YAML()
    handler.width = 4096
    path = repo / "params.yaml"
    data = handler.load(path.read_text())
    data["lessons"][lesson]["seed"] = seed
    with path.open("w") as out:
        handler.dump(data, out)


def time_real_work(root: str, lesson: str, ensemble: str, runs: int) -> dict[str, list[float]]:
    """Seconds of each rebuilt stage's own work, called in this process with the warm server's libraries
    imported and the project copy at ``root`` first on ``sys.path`` (``real_work`` runs it in a child)."""
    import importlib

    os.chdir(root)
    sys.path.insert(0, root)
    from lessonflow import warm

    for name in warm.PRELOAD:
        importlib.import_module(name)
    from lessonflow.params import load_params
    from lessonflow.paths import Layout
    from lessonflow.report import build_report
    from stages.ensemble import ensemble as run_ensemble
    from stages.evaluate import evaluate

    layout = Layout(Path(root))
    params = load_params(layout.params)
    calls = {"evaluate": lambda: evaluate(lesson, params, layout),
             "ensemble": lambda: run_ensemble(ensemble, params, layout),
             "report": lambda: build_report(params, layout)}
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs + 1):  # the first round imports what the calls import: not counted
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - started)
    return {name: values[1:] for name, values in times.items()}


def real_work(built: Path, dest: Path, lesson: str, ensemble: str, runs: int) -> dict[str, list[float]]:
    """Evaluate, ensemble and report called in one warm process, on a copy of the built project."""
    copy = Path(shutil.copytree(built, dest, symlinks=True))
    out = subprocess.run([sys.executable, __file__, "real-work", str(copy), lesson, ensemble, str(runs)], cwd=copy,
                         env=project_env(), capture_output=True, text=True, check=True).stdout
    shutil.rmtree(copy)
    return json.loads(out.strip().splitlines()[-1])


@contextlib.contextmanager
def private_warm_server(tmp: Path):
    """A warm server of this benchmark's own (its socket is named after ``PYTHONPATH``, here a folder that does
    not exist): another user of the machine stopping theirs (every test session does) cannot stop it mid-build."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(tmp / "own-warm-server")
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def section_overhead(runs: int = 5, edit_runs: int = 3, lesson: str | None = None) -> dict:
    from lessonflow import warm
    from lessonflow.params import load_params

    params = load_params(ROOT / "params.yaml")
    ensemble_name, group = next(iter(params.ensembles.items()))
    lesson = lesson or group.members[0]
    seed = params.lessons[lesson].seed
    old_yaml = subprocess.run(["git", "show", f"{OLD_SHAPE}:dvc.yaml"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout
    with tempfile.TemporaryDirectory(prefix="lessonflow-overhead-") as tmp, private_warm_server(Path(tmp)):
        project = copy_project(Path(tmp) / "project")
        repos = {"project": project, "floor": build_floor(Path(tmp) / "floor", store=project),
                 "old floor": build_floor(Path(tmp) / "old-floor", store=project, dvc_yaml=old_yaml, code_rev=OLD_SHAPE)}
        problems = shape_differences(shape(project), shape(repos["floor"]))
        if problems:
            raise AssertionError("the floor is not the project's shape: " + "; ".join(problems))
        times = Path(tmp) / "stage-times.jsonl"
        env = project_env(**{warm.TIMES_ENV: str(times)})
        warm.stop()  # the build pays for starting the warm server, as a user's first `make run` does
        build = {"project": timed_repro(project, env=env)}
        records = stage_records(times)
        for label in FLOORS:
            build[label] = timed_repro(repos[label])
        build["lock_lines"] = {label: len((repo / "dvc.lock").read_text().splitlines()) for label, repo in repos.items()}
        trained = train_seconds(project)
        first_seeds = train_seconds(project, first_seed_only=True)
        for label, repo in repos.items():
            commit_all(repo, "built")
        noop = {label: [] for label in repos}
        status = {label: [] for label in repos}
        for _ in range(runs):
            for label, repo in repos.items():
                noop[label].append(timed_repro(repo)["seconds"])
                status[label].append(timed_repro(repo, "status")["seconds"])
        edit = {**{label: [] for label in repos}, "training": [], "stages": None, "records": []}
        for run in range(edit_runs):
            for label, repo in repos.items():
                set_seed(repo, lesson, seed + 1 + run)
                timed = timed_repro(repo, env=env if label == "project" else None)
                edit[label].append(timed["seconds"])
                if label == "project":
                    edit["stages"] = sorted(timed["spans"])
                    edit["training"].append(train_seconds(project, [lesson])[lesson])
                    edit["records"].append(stage_records(times))
                elif sorted(timed["spans"]) != edit["stages"]:
                    raise AssertionError(f"the {label} reran {sorted(timed['spans'])}, the project {edit['stages']}")
        work = real_work(project, Path(tmp) / "real-work", lesson, ensemble_name, edit_runs)
        warm.stop()
    return report(build, records, trained, first_seeds, noop, status, edit, work, lesson)


def report(build: dict, records: list[dict], trained: dict, first_seeds: dict, noop: dict, status: dict, edit: dict,
           work: dict, lesson: str) -> dict:
    wall = build["project"]["seconds"]
    split = build_split(wall, records, trained)
    bookkeeping = split["DVC's own bookkeeping (outside every stage command)"]
    outside = 1 - sum(trained.values()) / wall
    outside_training = [p - t for p, t in zip(edit["project"], edit["training"])]
    edit_outside = statistics.median(outside_training)
    real = {name: statistics.median(values) for name, values in work.items()}
    floor_edit = statistics.median(edit["floor"])
    limit = GOALS["edit_rebuild"] * floor_edit + sum(real.values())
    labels = ("project", *FLOORS)
    result = {
        "stages": len(build["project"]["spans"]),
        "build": {"project_seconds": round(wall, 1), "floor_seconds": round(build["floor"]["seconds"], 1),
                  "old_floor_seconds": round(build["old floor"]["seconds"], 1),
                  "ratio": round(wall / build["floor"]["seconds"], 2), "split": split,
                  "share_outside_training": round(outside, 3),
                  "later_seeds_training_seconds": round(sum(trained.values()) - sum(first_seeds.values()), 2),
                  "seeded_lessons": sorted(lesson for lesson in trained if trained[lesson] != first_seeds[lesson]),
                  "dvc_lock_lines": build.get("lock_lines"), "stage_records": len(records),
                  "per_verb": per_verb(records), "per_stage": records,
                  "spans": {label: build[label]["spans"] for label in labels}},
        "noop_repro": {label: summary(noop[label]) for label in labels},
        "status": {label: summary(status[label]) for label in labels},
        "edit": {"lesson": lesson, "param": f"lessons.{lesson}.seed", "stages": edit["stages"],
                 **{label: summary(edit[label]) for label in labels},
                 "training": summary(edit["training"]), "project_outside_training": summary(outside_training),
                 "real_work": {name: summary(values) for name, values in work.items()},
                 "limit_seconds": round(limit, 3), "per_stage": edit["records"]},
    }
    for key in ("noop_repro", "status"):
        for label in FLOORS:
            result[key][f"ratio to the {label}"] = round(result[key]["project"]["median"] / result[key][label]["median"], 2)
        result[key]["ratio"] = result[key]["ratio to the floor"]
    result["edit"]["ratio_outside_training"] = round(edit_outside / floor_edit, 2)
    lock_lines = build["lock_lines"]["project"]
    result["goals"] = {
        "noop_repro": {"goal": f"≤ ×{GOALS['noop_repro']} the floor", "measured": f"×{result['noop_repro']['ratio']}",
                       "met": result["noop_repro"]["ratio"] <= GOALS["noop_repro"]},
        "edit_rebuild": {"goal": f"outside training ≤ {GOALS['edit_rebuild']} × floor + real work = {limit:.2f} s",
                         "measured": f"{edit_outside:.2f} s",
                         "met": edit_outside <= limit},
        "edit_outside_training_seconds": {"goal": f"≤ {GOALS['edit_outside_training_seconds']} s",
                                          "measured": f"{edit_outside:.2f} s",
                                          "met": edit_outside <= GOALS["edit_outside_training_seconds"]},
        "build_share_outside_training": {"goal": f"≤ {GOALS['build_share_outside_training']:.0%}",
                                         "measured": f"{outside:.1%}",
                                         "met": outside <= GOALS["build_share_outside_training"]},
        "bookkeeping_seconds": {"goal": f"≤ {GOALS['bookkeeping_seconds']} s", "measured": f"{bookkeeping:.1f} s",
                                "met": bookkeeping <= GOALS["bookkeeping_seconds"]},
        "lock_lines": {"goal": f"≤ {GOALS['lock_lines']}", "measured": str(lock_lines),
                       "met": lock_lines <= GOALS["lock_lines"]},
    }
    print(f"overhead: no-op repro ×{result['noop_repro']['ratio']} (×{result['noop_repro']['ratio to the old floor']} "
          f"the old shape's floor), status ×{result['status']['ratio']}, one-param rebuild outside training "
          f"{edit_outside:.2f} s (limit {limit:.2f} s), build {wall:.0f} s ({outside:.0%} outside training, DVC's "
          f"bookkeeping {bookkeeping:.0f} s) against the floor's {build['floor']['seconds']:.0f} s and the old "
          f"floor's {build['old floor']['seconds']:.0f} s; dvc.lock {build['lock_lines']}", flush=True)
    return result


def markdown(result: dict) -> list[str]:
    def row(label: str, measure: dict) -> str:
        p = measure["project"]
        cells = [f"{measure[floor]['median']} ({measure[floor]['spread']})" for floor in FLOORS]
        ratios = [f"×{round(p['median'] / measure[floor]['median'], 2)}" for floor in FLOORS]
        return f"| {label} | {len(p['runs'])} | {p['median']} ({p['spread']}) | {' | '.join(cells)} | {' | '.join(ratios)} |"

    b, e = result["build"], result["edit"]
    lines = ["### Pipeline overhead against DVC's floor", "",
             f"The floor: the project's {result['stages']} stages with the same deps, params and outs, each command "
             f"only copying its outputs; the old floor: the same for `dvc.yaml` as of {OLD_SHAPE} "
             "(`benchmarks/overhead.py`). Seconds; median (spread).", "",
             "| measure | runs | project | floor | old floor | ÷ floor | ÷ old floor |", "|---|---|---|---|---|---|---|",
             f"| whole default build | 1 | {b['project_seconds']} | {b['floor_seconds']} | {b['old_floor_seconds']} | "
             f"×{b['ratio']} | ×{round(b['project_seconds'] / b['old_floor_seconds'], 2)} |",
             row("`dvc repro`, nothing to do", result["noop_repro"]),
             row("`dvc status`, nothing to do", result["status"]),
             row(f"`{e['param']}` edited, `dvc repro` ({len(e['stages'])} stages)", e),
             f"| the same, training subtracted | {len(e['project']['runs'])} | {e['project_outside_training']['median']} "
             f"({e['project_outside_training']['spread']}) | {e['floor']['median']} | {e['old floor']['median']} | "
             f"×{e['ratio_outside_training']} | |",
             "", "`dvc.lock` lines after the build: " + ", ".join(f"{label} {n}" for label, n in b["dvc_lock_lines"].items()),
             "", f"Real work of the rebuilt stages in a warm process (median of {len(e['training']['runs'])}): "
             + ", ".join(f"{name} {v['median']} s" for name, v in e["real_work"].items())
             + f"; training {e['training']['median']} s.", "",
             f"Where the default build's {b['project_seconds']} s went ({b['stage_records']} stage records):", "",
             "| part | seconds | share |", "|---|---|---|"]
    lines += [f"| {part} | {seconds} | {seconds / b['project_seconds']:.1%} |" for part, seconds in b["split"].items()]
    lines += ["", f"Training of the seeds after the first ({len(b['seeded_lessons'])} lessons with several seeds): "
              f"{b['later_seeds_training_seconds']} s of the training above."]
    lines += ["", "| stage kind | stages | start-up of one (median) | its work after the hand-off (median) |",
              "|---|---|---|---|"]
    lines += [f"| {verb} | {v['stages']} | {v['startup_median']} | {v['child_median']} |"
              for verb, v in b["per_verb"].items()]
    lines += ["", "| goal | target | measured | met |", "|---|---|---|---|"]
    lines += [f"| {name} | {g['goal']} | {g['measured']} | {'yes' if g['met'] else 'no'} |"
              for name, g in result["goals"].items()]
    return lines + [""]


if __name__ == "__main__":
    if sys.argv[1:2] == ["real-work"]:  # see real_work
        root, lesson, ensemble, runs = sys.argv[2:6]
        print(json.dumps(time_real_work(root, lesson, ensemble, int(runs))))
    else:
        sys.exit("usage: python benchmarks/bench.py --only overhead (this module is its section)")
