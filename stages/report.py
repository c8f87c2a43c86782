"""``report``: write ``reports/report.html`` and ``reports/report.md`` from every lesson's and ensemble's results."""

import argparse
import sys

from lessonflow.params import Params, load_params
from lessonflow.paths import Layout
from lessonflow.report import build_report
from stages import USER_ERRORS


def stage_params(layout: Layout) -> Params:
    """Every lesson in full (the report shows them all); the datasets' sources are not its business."""
    return load_params(layout.params, datasets=[])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.report", description=__doc__)
    parser.add_argument("--since", default="HEAD",
                        help="git revision the 'since' section compares against (default HEAD)")
    args = parser.parse_args()
    layout = Layout.here()
    try:
        page = build_report(stage_params(layout), layout, since=args.since)
    except USER_ERRORS as err:
        print(f"report failed: {err}", file=sys.stderr)
        sys.exit(1)
    print(f"report: {page.relative_to(layout.root)} and report.md")


if __name__ == "__main__":
    main()
