"""One retry policy for every retry: DVC lock contention in the flow, download rounds, Prefect's download stages."""

from __future__ import annotations

import pytest
from tenacity import retry_if_exception_type

from lessonflow.retry import delays, retrying, until_accepted


def test_an_error_is_retried_with_doubling_waits_and_the_last_one_is_raised_unchanged():
    calls, logged = [], []

    def flaky():
        calls.append(len(calls))
        raise TimeoutError(f"attempt {len(calls)}\nits detail")

    with pytest.raises(TimeoutError, match="attempt 3"):
        retrying(retry_if_exception_type(TimeoutError), first=0.01, attempts=3, log=logged.append)(flaky)
    assert calls == [0, 1, 2]
    assert logged == ["attempt 1; retrying in 0 s", "attempt 2; retrying in 0 s"]


def test_a_refused_result_is_retried_until_one_is_accepted():
    results, logged = iter([1, 1, 0]), []
    assert until_accepted(lambda: next(results), lambda code: code == 0, first=0.01, log=logged.append,
                          why="busy") == 0
    assert logged == ["busy; retrying in 0 s"] * 2


def test_prefect_task_retries_wait_as_the_policy_does():
    assert delays(10, 3) == [10, 20, 30]  # doubling, then the ceiling
