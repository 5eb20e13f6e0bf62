"""Exponential backoff with jitter, for every retry loop of the services."""

from __future__ import annotations

import random
from collections.abc import Callable

#: A source of numbers in [0, 1): `random.random` unless a test fixes it.
Jitter = Callable[[], float]


def backoff_seconds(
    first: float, attempt: int, cap: float, jitter: Jitter = random.random
) -> float:
    """The wait before retrying after failed attempt number `attempt` (from 1): between
    half and all of `first * 2**(attempt - 1)`, at most `cap` ("equal jitter").

    The random half keeps processes that failed together (both instances of a service
    when the store went away, every delivery to a partner that was down) from retrying
    in step and meeting the recovering server all at once; the fixed half keeps the wait
    growing with each failure.
    """
    ceiling = min(first * 2.0 ** (attempt - 1), cap)
    return ceiling / 2 + jitter() * ceiling / 2
