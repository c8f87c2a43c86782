"""Each stage depends on exactly the project modules it runs, so an edit rebuilds exactly those stages.

The truth is taken from the running code, not from dvc.yaml: each stage's start-up runs in a forked
child of one interpreter with the libraries loaded, and the project modules it imported are read off
``sys.modules``. Then, in a real DVC lock of the whole pipeline (stand-in outputs), editing each module
changes exactly the fingerprints of the stages that import it, and for two modules ``lessonflow status``
names those stages before ``check`` runs and DVC itself finds them changed once it has.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import BIN, ROOT, commit_all, copy_project, dvc, project_env, run

from lessonflow import fingerprints
from lessonflow.codedeps import LAUNCH_ONLY, USERS_ONLY
from lessonflow.params import load_params
from lessonflow.paths import Layout

SECTION = {"train": "lessons", "evaluate": "lessons", "download": "datasets", "prepare": "datasets",
           "ensemble": "ensembles"}
MODULES = sorted(path.relative_to(ROOT).as_posix() for package in ("lessonflow", "stages")
                 for path in (ROOT / package).rglob("*.py"))

TRACE = r"""
import importlib, json, os, sys
from pathlib import Path
import dvclive, matplotlib.pyplot, numpy, pydantic, torch, yaml  # loaded once, before the forks

root = Path.cwd().resolve()
traced, running = {}, {}
def collect(pid):
    stage, read = running.pop(pid)
    with os.fdopen(read) as fh:
        traced[stage] = json.loads(fh.read())
for stage, verb, key in json.loads(sys.argv[1]):
    if len(running) >= os.cpu_count():  # one child per core at a time
        collect(os.wait()[0])
    read, write = os.pipe()
    if (pid := os.fork()) == 0:
        from lessonflow.paths import Layout
        module = importlib.import_module(f"stages.{verb}")
        layout = Layout.here()
        section = json.loads(sys.argv[2]).get(verb)
        if section:  # the shared start-up of a stage run by `stage_main`
            importlib.import_module("stages").entry_params(layout, section, key)
        else:  # check and report read params.yaml their own way
            module.stage_params(layout)
        files = sorted({Path(m.__file__).resolve().relative_to(root).as_posix() for m in list(sys.modules.values())
                        if getattr(m, "__file__", None)
                        and any(Path(m.__file__).resolve().is_relative_to(root / top) for top in ("lessonflow", "stages"))})
        os.write(write, json.dumps(files).encode())
        os._exit(0)
    os.close(write)
    running[pid] = stage, read
while running:
    collect(os.wait()[0])
print(json.dumps(traced))
"""


def resolved_stages(repo: Path) -> dict[str, dict]:
    """Every stage as DVC resolves dvc.yaml: its command's verb and key, and the project modules it depends on,
    directly or through the fingerprint file ``check`` writes for it."""
    script = ("import json; from dvc.repo import Repo; print(json.dumps({s.addressing: [s.cmd, [d.def_path for d in "
              "s.deps], [o.def_path for o in s.outs]] for s in Repo('.').index.stages}))")
    listed = json.loads(subprocess.run([sys.executable, "-c", script], cwd=repo, capture_output=True, text=True,
                                       check=True, env=project_env()).stdout)
    fingerprinted = {fingerprints.path(name): set(modules)
                     for name, modules in fingerprints.groups(load_params(repo / "params.yaml"), repo).items()}
    stages = {}
    for name, (cmd, deps, outs) in listed.items():
        verb, _, key = cmd.removeprefix("python -m stages.").partition(" ")
        stages[name] = {"verb": verb, "key": key, "outs": outs, "deps": deps,
                        "code": {dep for dep in deps if dep.endswith(".py")}.union(
                            *(fingerprinted[dep] for dep in deps if dep in fingerprinted))}
    return stages


def traced_imports(repo: Path, stages: dict[str, dict]) -> dict[str, set[str]]:
    plan = json.dumps([[name, stage["verb"], stage["key"]] for name, stage in stages.items()])
    out = subprocess.run([sys.executable, "-c", TRACE, plan, json.dumps(SECTION)], cwd=repo, capture_output=True,
                         text=True, check=True, env=project_env()).stdout
    return {name: set(files) - LAUNCH_ONLY - USERS_ONLY for name, files in json.loads(out).items()}


@pytest.fixture(scope="module")
def project_stages() -> dict[str, dict]:
    return resolved_stages(ROOT)


@pytest.fixture(scope="module")
def imports(project_stages) -> dict[str, set[str]]:
    return traced_imports(ROOT, project_stages)


def test_every_stage_depends_on_exactly_the_modules_it_imports(project_stages, imports):
    wrong = {}
    for name, stage in project_stages.items():
        # the check reads (to see whether dvc.yaml is current) every module any stage runs
        expected = set().union(*imports.values()) if name == "check" else imports[name]
        if stage["code"] != expected:
            wrong[name] = {"missing": sorted(expected - stage["code"]), "superfluous": sorted(stage["code"] - expected)}
    assert not wrong, json.dumps(wrong, indent=1)


def test_the_import_graph_has_no_circle():
    from lessonflow.codedeps import imported_modules, module_file

    graph = {}
    for module in MODULES:
        graph[module] = {module_file(name).relative_to(ROOT).as_posix()
                         for name in imported_modules(ROOT / module) if module_file(name)} - {module}
    state, circles = {}, []

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                circles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for module in MODULES:
        if module not in state:
            visit(module, [module])
    assert not circles, circles


def test_dvc_yaml_is_what_lessonflow_dvc_yaml_writes():
    result = subprocess.run([sys.executable, "-m", "lessonflow.cli", "dvc-yaml", "--check"], cwd=ROOT,
                            capture_output=True, text=True, env=project_env())
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def locked(tmp_path_factory, project_stages) -> Path:
    """The whole pipeline in a real DVC lock: the real `check`'s outputs (the fingerprints), stand-ins for
    every other output, recorded by `dvc commit`."""
    repo = copy_project(tmp_path_factory.mktemp("locked"))
    run(repo, sys.executable, "-m", "stages.check", env=project_env(LESSONFLOW_WARM="off"))
    for name, stage in project_stages.items():
        for out in stage["outs"] if name != "check" else ():
            path = repo / out
            if path.suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("stand-in\n")
            else:
                path.mkdir(parents=True, exist_ok=True)
                (path / "stand-in").write_text("stand-in\n")
    for stage in project_stages.values():  # files inside an output folder (an ensemble's members' predictions)
        for dep in stage["deps"]:
            if not (repo / dep).exists():
                (repo / dep).write_text("stand-in\n")
    dvc(repo, "commit", "--force", env=project_env())
    commit_all(repo, "every stage recorded")
    assert "up to date" in dvc(repo, "status", env=project_env()).stdout
    return repo


def lessonflow_status(repo: Path) -> dict:
    return json.loads(run(repo, str(BIN / "lessonflow"), "status", "--json", env=project_env()).stdout)


@pytest.mark.long  # the locked fixture
@pytest.mark.parametrize("module", MODULES)
def test_editing_a_module_changes_exactly_the_stages_that_import_it(locked, project_stages, imports, module):
    """``check`` reruns on any module a stage runs (its own deps), and rewrites exactly the fingerprints of the
    stages that import it; that DVC and ``lessonflow status`` then name those stages, the next test shows."""
    path = locked / module
    original = path.read_text()
    path.write_text(original + "# edited\n")
    try:
        changed = {fingerprints.path(name) for name in fingerprints.outdated(Layout(locked), load_params(locked / "params.yaml"))}
    finally:
        path.write_text(original)
    expected = {name for name, files in imports.items() if module in files}
    assert {name for name, stage in project_stages.items() if changed & set(stage["deps"])} == expected - {"check"}
    assert (module in project_stages["check"]["code"]) == bool(expected)


@pytest.mark.long  # a real `check` run and three status reads per module
@pytest.mark.parametrize("module", ["lessonflow/accel.py", "lessonflow/scratch/framework.py"])
def test_after_check_rewrites_the_fingerprints_dvc_itself_finds_exactly_the_stages_lessonflow_status_named(
        locked, imports, module):
    path = locked / module
    path.write_text(path.read_text() + "# edited\n")
    try:
        assert set(json.loads(dvc(locked, "status", "--json", env=project_env()).stdout)) == {"check"}
        predicted = set(lessonflow_status(locked))
        dvc(locked, "repro", "--single-item", "check", env=project_env())
        after = set(json.loads(dvc(locked, "status", "--json", env=project_env()).stdout))
    finally:
        run(locked, "git", "checkout", "--", ".")
    expected = {name for name, files in imports.items() if module in files}
    assert predicted == expected | {"check"}
    assert after == expected - {"check"}  # check has run
    assert {"train@mnist-cnn"} <= after if module.endswith("accel.py") else (
        "train@boston-mini-framework" in after and "train@mnist-cnn" not in after)


@pytest.mark.long  # the locked fixture and a real `check`
def test_a_lesson_params_edit_reaches_its_evaluate_stage_through_its_fingerprint_alone(locked):
    params_path = locked / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["lessons"]["mnist-cnn"]["optimizer"]["lr"] = 0.02
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        predicted = set(lessonflow_status(locked))
        dvc(locked, "repro", "--single-item", "check", env=project_env())
        after = set(json.loads(dvc(locked, "status", "--json", env=project_env()).stdout))
        evaluated = yaml.safe_load((locked / "dvc.lock").read_text())["stages"]["evaluate@mnist-cnn"]
    finally:
        run(locked, "git", "checkout", "--", ".")
    assert predicted == {"check", "train@mnist-cnn", "evaluate@mnist-cnn", "report"}
    assert after == {"train@mnist-cnn", "evaluate@mnist-cnn", "report"}
    assert "params" not in evaluated  # its lock entry holds the digest's file, not every key of the lesson
