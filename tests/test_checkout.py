"""The checkout lock every flow run takes (flows/checkout.py), with real processes and a real SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import ROOT

HOLD = """
import sys, time
from pathlib import Path
from flows.checkout import hold
with hold(Path(sys.argv[1]), "nightly-20261203T030000Z", print):
    print("holding", flush=True)
    time.sleep(600)
"""


def holding_process(root: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "holding"
    return process


def test_a_second_run_waits_for_the_holder_says_for_whom_and_a_killed_holder_frees_the_checkout(tmp_path):
    from flows.checkout import hold, holder

    assert holder(tmp_path) is None
    process = holding_process(tmp_path)
    assert holder(tmp_path).startswith(f"nightly-20261203T030000Z (pid {process.pid}, since ")
    said, entered = [], threading.Event()

    def second_run() -> None:
        with hold(tmp_path, "flow-run-20261203T031500Z", said.append):
            entered.set()

    waiter = threading.Thread(target=second_run)
    waiter.start()
    time.sleep(2)
    assert not entered.is_set(), "the second run did not wait for the first"
    assert said and f"nightly-20261203T030000Z (pid {process.pid}" in said[0] and "waiting" in said[0], said

    process.send_signal(signal.SIGKILL)  # nothing in the holder gets to clean up
    process.wait()
    waiter.join(timeout=10)
    assert entered.is_set(), "the lock of a killed run was not released"
    assert holder(tmp_path) is None
