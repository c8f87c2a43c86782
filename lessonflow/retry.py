"""The one retry policy of the project: the same call again after a wait that doubles, up to a ceiling.

What is retried passes by itself: DVC's repository lock held by another process, a mirror that drops
a connection, a download stage on a flaky network. Each caller says what to retry on and how many
tries (none: until it succeeds); the waits, the log line before each wait and the last error
re-raised unchanged are the same everywhere, through tenacity. Prefect's task retries (a download
stage of the flow) take their waits from ``delays``, so they follow the same policy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tenacity import (RetryCallState, Retrying, retry_base, retry_if_not_result, stop_after_attempt, stop_never,
                      wait_exponential)

CEILING_S = 30.0


def retrying(retry: retry_base, *, first: float, attempts: int | None = None, ceiling: float = CEILING_S,
             log: Callable[[str], None] | None = None, why: str = "") -> Retrying:
    """A tenacity ``Retrying``: calling it with a function calls that until ``retry`` lets it through.

    ``why`` names a retried result in the log line; a retried error names itself.
    """

    def before_sleep(state: RetryCallState) -> None:
        if log is not None:
            error = state.outcome.exception() if state.outcome else None
            reason = str(error).splitlines()[0] if error else why
            log(f"{reason}; retrying in {state.next_action.sleep:.0f} s")

    return Retrying(retry=retry, wait=wait_exponential(multiplier=first, min=first, max=ceiling),
                    stop=stop_after_attempt(attempts) if attempts else stop_never,
                    before_sleep=before_sleep, reraise=True)


def delays(first: float, count: int, ceiling: float = CEILING_S) -> list[float]:
    """The waits of ``retrying`` before each of ``count`` retries, for a retry loop that is not ours (Prefect's)."""
    return [min(first * 2**number, ceiling) for number in range(count)]


def until_accepted(call: Callable[[], Any], accepted: Callable[[Any], bool], *, first: float,
                   log: Callable[[str], None] | None = None, why: str = "") -> Any:
    """``call()`` again while ``accepted`` refuses its result; the accepted result."""
    return retrying(retry_if_not_result(accepted), first=first, log=log, why=why)(call)
