"""``check``: every entry of params.yaml valid and dvc.yaml current, before any other stage runs.

Each stage validates the entry it works on; this one validates all of them, so a typo in any
lesson stops ``dvc repro`` before a download starts. Then it writes the code fingerprints every
other stage depends on (``lessonflow/fingerprints.py``). Its record never changes and a
fingerprint only when its modules (or the report's params) do, so a rerun rebuilds nothing else.
"""

import json
import sys

from lessonflow import dvcfile, fingerprints
from lessonflow.atomic import atomic_path
from lessonflow.errors import ParamsError
from lessonflow.params import Params, load_params
from lessonflow.paths import Layout
from stages import USER_ERRORS, exit_without_teardown


def stage_params(layout: Layout) -> Params:
    return load_params(layout.params)


def main() -> None:
    layout = Layout.here()
    try:
        params = stage_params(layout)
        problem = dvcfile.stale(layout, params)
        if problem:
            raise ParamsError(problem)
    except USER_ERRORS as err:
        print(f"check failed: {err}", file=sys.stderr)
        sys.exit(1)
    fingerprints.write(layout, params)
    with atomic_path(layout.root / dvcfile.CHECK_RECORD) as tmp:
        tmp.write_text(json.dumps({"params": "valid", "dvc.yaml": "current"}, indent=2) + "\n")
    print(f"check: {len(params.lessons)} lessons, {len(params.datasets)} datasets valid; dvc.yaml current")
    exit_without_teardown()


if __name__ == "__main__":
    main()
