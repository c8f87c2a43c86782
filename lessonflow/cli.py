"""``lessonflow <command>``: the project's command line.

Each command is one ``add_<name>(subparsers)`` function listed in ``COMMANDS``; it declares
its arguments and sets ``run`` to a function of the parsed arguments returning an exit status.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def add_compare(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="every lesson's headline metric at two revisions, with the change",
        description="Compare every lesson's and ensemble's headline metric between two revisions, read with "
                    "`dvc metrics diff` (a git revision, or 'workspace' for the files on disk).")
    parser.add_argument("rev_a", nargs="?", default="HEAD", help="the old revision (default: HEAD)")
    parser.add_argument("rev_b", nargs="?", default="workspace", help="the new revision (default: workspace)")
    parser.add_argument("--md", type=Path, metavar="FILE",
                        help="also write the table as Markdown, e.g. for a pull request")
    parser.set_defaults(run=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from dvc.exceptions import DvcException
    from scmrepo.exceptions import SCMError

    from lessonflow.compare import compare, table

    try:
        comparison = compare(args.rev_a, args.rev_b)
    except (DvcException, SCMError) as err:
        print(f"lessonflow compare: {err}", file=sys.stderr)
        return 1
    print(table(comparison), end="")
    if args.md:
        args.md.write_text(table(comparison, markdown=True))
        print(f"Markdown written to {args.md}")
    return 0


def add_history(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "history", help="each lesson's headline metric over the last commits and recorded runs",
        description="Each lesson's headline metric at the last N commits and saved DVC experiments (every flow "
                    "or scheduled run that changed a result), oldest first, with the change from one to the next.")
    parser.add_argument("--last", type=int, default=10, metavar="N", help="revisions to look at (default: 10)")
    parser.add_argument("--lesson", metavar="ID", help="one lesson or ensemble only")
    parser.set_defaults(run=run_history)


def run_history(args: argparse.Namespace) -> int:
    from dvc.exceptions import DvcException
    from scmrepo.exceptions import SCMError

    from lessonflow.history import history, table

    try:
        print(table(history(Path.cwd(), args.last, args.lesson)), end="")
    except (DvcException, SCMError, subprocess.CalledProcessError) as err:
        print(f"lessonflow history: {err}", file=sys.stderr)
        return 1
    return 0


def add_flag_command(subparsers: argparse._SubParsersAction, name: str, run: Callable[[argparse.Namespace], int],
                     flag: tuple[str, str], help: str, description: str) -> None:
    """A command whose only argument is one on/off ``flag`` (its name and help)."""
    parser = subparsers.add_parser(name, help=help, description=description)
    parser.add_argument(flag[0], action="store_true", help=flag[1])
    parser.set_defaults(run=run)


def add_dvc_yaml(subparsers: argparse._SubParsersAction) -> None:
    add_flag_command(
        subparsers, "dvc-yaml", run_dvc_yaml, ("--check", "only say whether dvc.yaml is current (exit 1 if not)"),
        help="write dvc.yaml from params.yaml and the code's imports",
        description="Write dvc.yaml: a stage per dataset, lesson and ensemble, each depending on exactly the "
                    "project modules it imports. Run it after adding a lesson, dataset or ensemble to params.yaml, "
                    "switching the profile or changing an import; the pipeline's `check` stage says when it is due.")
    subparsers.choices["dvc-yaml"].add_argument(
        "--profile", choices=["embedded", "full"],
        help="write it for this profile, as `dvc exp run -S profile=...` will find params.yaml (`make run PROFILE=`)")


def run_dvc_yaml(args: argparse.Namespace) -> int:
    from lessonflow import dvcfile
    from lessonflow.errors import ParamsError
    from lessonflow.params import parse_params
    from lessonflow.paths import Layout
    from lessonflow.schema import read_params

    layout = Layout.here()
    try:
        raw = read_params(layout.params)
        params = parse_params({**raw, "profile": args.profile} if args.profile else raw)
    except ParamsError as err:
        print(f"lessonflow dvc-yaml: {err}", file=sys.stderr)
        return 1
    if args.check:
        problem = dvcfile.stale(layout, params)
        print(problem or "dvc.yaml is current")
        return 1 if problem else 0
    print(f"wrote {dvcfile.write(layout, params).name}")
    return 0


def add_status(subparsers: argparse._SubParsersAction) -> None:
    add_flag_command(
        subparsers, "status", run_status, ("--json", "stage -> reasons, as `dvc status --json` writes them"),
        help="the stages the next `dvc repro` will rebuild, code edits included",
        description="What `dvc status` reports, plus every stage whose code (or, for evaluate@ and the report, "
                    "params) changed: a stage depends on its modules through a fingerprint file that the `check` "
                    "stage rewrites during the build, so `dvc status` alone names only `check` after an edit to a "
                    "module.")


def run_status(args: argparse.Namespace) -> int:
    import json

    from dvc.exceptions import DvcException

    from lessonflow.errors import ParamsError
    from lessonflow.status import lines, stale

    try:
        found = stale(Path.cwd())
    except (DvcException, ParamsError) as err:
        print(f"lessonflow status: {err}", file=sys.stderr)
        return 1
    print(json.dumps(found, indent=1) if args.json else "\n".join(lines(found)))
    return 0


def add_flow(subparsers: argparse._SubParsersAction) -> None:
    flow = subparsers.add_parser("flow", help="run the pipeline as a Prefect flow (independent stages concurrently)")
    commands = flow.add_subparsers(dest="flow_command", required=True, metavar="COMMAND")
    parser = commands.add_parser(
        "run", help="bring the selected stages up to date",
        description="Rebuild what changed, as `dvc repro` would, running independent stages side by side. "
                    "Targets are stages (train@mnist-cnn) or lesson/dataset keys (mnist-cnn); default: all.")
    parser.add_argument("targets", nargs="*", help="stages or lesson/dataset keys (default: every stage)")
    parser.add_argument("--profile", choices=["embedded", "full"], help="set `profile` in params.yaml first")
    parser.add_argument("--force", action="store_true", help="rerun the selected stages even if unchanged")
    parser.add_argument("--max-parallel", type=int, default=2, metavar="N", help="stages at once (default: 2)")
    parser.add_argument("--runner", choices=["thread", "dask"], default="thread",
                        help="threads on this machine, or a Dask cluster (default: thread)")
    parser.add_argument("--address", metavar="tcp://HOST:PORT",
                        help="the Dask scheduler (default: a local cluster of --max-parallel processes)")
    parser.add_argument("--remote", action="store_true",
                        help="workers have their own clones: share outputs through the default DVC remote")
    parser.add_argument("--refresh-sources", action="store_true",
                        help="re-download sources that change by themselves (e.g. official stock prices)")
    add_result_options(parser)
    parser.set_defaults(run=run_flow)


def add_result_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--push", action="store_true", help="dvc push what the run built to the default DVC remote")
    parser.add_argument("--no-record", dest="record", action="store_false",
                        help="do not save a run that changed results as a DVC experiment")


def run_flow(args: argparse.Namespace) -> int:
    from flows.pipeline import pipeline, task_runner

    flow = pipeline.with_options(task_runner=task_runner(args.runner, args.max_parallel, args.address))
    state = flow(targets=args.targets or None, profile=args.profile, force=args.force, max_parallel=args.max_parallel,
                 refresh_sources=args.refresh_sources, remote=args.remote, push=args.push, record=args.record,
                 return_state=True)
    return 0 if state.is_completed() else 1


def add_schedule(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "schedule", help="serve the pipeline flow on a cron schedule",
        description="Serve the flow with Prefect until interrupted; each run re-downloads sources that change by "
                    "themselves. Starts a local Prefect server when PREFECT_API_URL is not set.")
    parser.add_argument("--cron", required=True, help='e.g. "0 3 * * *" (every day at 03:00)')
    parser.add_argument("--name", default="scheduled", help="the deployment's name (default: scheduled)")
    parser.add_argument("--max-parallel", type=int, default=2, metavar="N", help="stages at once (default: 2)")
    add_result_options(parser)
    parser.set_defaults(run=run_schedule)


def run_schedule(args: argparse.Namespace) -> int:
    from flows.serve import serve
    from lessonflow.errors import ParamsError

    try:
        serve(args.cron, name=args.name, max_parallel=args.max_parallel, root=Path.cwd(), push=args.push,
              record=args.record)
    except ParamsError as err:  # the orchestration settings are read before the server starts
        print(f"lessonflow schedule: {err}", file=sys.stderr)
        return 1
    return 0


def add_sweep(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep", help="run a grid of params values as DVC experiments, N at a time",
        description="Run every combination of the values as a DVC experiment (`dvc exp show` lists them), "
                    "N at a time, each in its own temporary clone of this checkout: the supported way to run "
                    "experiments in parallel (`dvc queue start -j N` fails on lock errors above 1). "
                    "Every combination is validated first; the workspace is left as it is.")
    parser.add_argument("assignments", nargs="+", metavar="KEY=V1,V2",
                        help="a params.yaml key and its values, as `dvc exp run -S` takes them, e.g. "
                             "lessons.mnist-cnn.optimizer.lr=0.01,0.02,0.05; several keys: every combination")
    parser.add_argument("-j", "--jobs", type=int, default=2, metavar="N", help="experiments at once (default: 2)")
    parser.add_argument("--target", dest="targets", action="append", metavar="TARGET",
                        help="a stage or lesson/dataset key to reproduce (repeatable; default: the whole pipeline)")
    parser.set_defaults(run=run_sweep)


def run_sweep(args: argparse.Namespace) -> int:
    from dvc.exceptions import DvcException
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.sweep import check, grid, sweep, target_stages

    root = Path.cwd()
    try:  # a typo stops here, before Prefect or any clone starts
        if args.jobs < 1:
            raise ValueError(f"--jobs must be at least 1 (got {args.jobs})")
        check(root, grid(args.assignments))
        target_stages(root, args.targets)
    except (ValueError, DvcException) as err:  # ParamsError is a ValueError
        print(f"lessonflow sweep: {err}", file=sys.stderr)
        return 1
    flow = sweep.with_options(task_runner=ThreadPoolTaskRunner(max_workers=args.jobs))
    state = flow(assignments=args.assignments, jobs=args.jobs, targets=args.targets, root=str(root), return_state=True)
    return 0 if state.is_completed() else 1


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_compare, add_history, add_dvc_yaml, add_status, add_flow, add_schedule, add_sweep]


def main(argv: list[str] | None = None) -> int:
    # A local Prefect server otherwise logs an ERROR on every start when it cannot reach the
    # internet to send usage telemetry; a user's own setting wins.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The temporary server's first start creates its database; Prefect's 20 s allowance is too short
    # for that on a busy 2-core machine, and the run would fail before any stage started.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    parser = argparse.ArgumentParser(prog="lessonflow", description="Rebuild and inspect the lessons of the zoo.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
