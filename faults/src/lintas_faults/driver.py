"""The NGO client: submits cases concurrently, retrying the same request until answered.

Every case has its own `Idempotency-Key` and `external_ref`. On a connection error, a
timeout, a 5xx or a 429 the same request (same key, same body) is sent again with
backoff, to either intake instance, until it is answered 201 (or 200) or the per-case
time bound passes. A case counts as acknowledged once a 201/200 named its id.

Every `close_every`-th case is closed as soon as it is acknowledged, so its
`case.closed` follows its `case.submitted` on the cases topic at once: the order check.
Handled in order, referral offers and then withdraws; out of order, the close finds no
routing and the offer stays open.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from lintas_intake.entrypoints.examples import example_submission

RETRYABLE = {429, 500, 502, 503, 504}


def case_body(run: str, number: int) -> dict[str, Any]:
    """The example case with its own external_ref and phone number."""
    return example_submission(f"FAULTS-{run}-{number:06d}", f"+62813{number:07d}")


@dataclass
class Submission:
    """What happened to one case the client tried to submit."""

    number: int
    external_ref: str
    idempotency_key: str
    case_id: str | None = None
    reference: str | None = None
    outcome: str = "pending"  # acknowledged | conflict | refused | gave_up
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    #: For the order check: "closed" once intake answered the close, else why not.
    close: str | None = None


@dataclass
class Progress:
    """Shared with the chaos schedule: how many cases are finished."""

    total: int
    finished: int = 0

    @property
    def fraction(self) -> float:
        return self.finished / self.total if self.total else 1.0

    async def reached(self, share: float, deadline: float) -> None:
        """Return once `share` of the cases are finished, or at `deadline` (monotonic)."""
        while self.fraction < share and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.2)


async def _send(
    clients: list[httpx.AsyncClient],
    sub: Submission,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
    rng: random.Random,
    deadline: float,
) -> httpx.Response | None:
    """POST until answered with a status that is not retryable; None past `deadline`."""
    delay = 0.2
    while True:
        sub.attempts += 1
        try:
            response = await rng.choice(clients).post(path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            sub.errors.append(type(exc).__name__)
        else:
            if response.status_code not in RETRYABLE:
                return response
            sub.errors.append(f"HTTP {response.status_code}")
        if time.monotonic() + delay > deadline:
            return None
        await asyncio.sleep(delay * (0.5 + rng.random()))
        delay = min(delay * 2, 3.0)


async def _submit(
    clients: list[httpx.AsyncClient],
    api_key: str,
    sub: Submission,
    body: dict[str, Any],
    rng: random.Random,
    per_case_seconds: float,
    close: bool,
) -> None:
    deadline = time.monotonic() + per_case_seconds
    headers = {"X-API-Key": api_key, "Idempotency-Key": sub.idempotency_key}
    response = await _send(clients, sub, "/v1/cases", body, headers, rng, deadline)
    if response is None:
        sub.outcome = "gave_up"
        return
    if response.status_code in (200, 201):
        data = response.json()
        sub.case_id, sub.reference = data["id"], data.get("reference")
        sub.outcome = "acknowledged"
    elif response.status_code == 409 and "existing_case_id" in response.text:
        sub.outcome = "conflict"  # the external_ref exists under another key
        sub.case_id = response.json().get("existing_case_id")
        return
    else:
        sub.outcome = "refused"
        sub.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
        return
    if close:
        answer = await _send(
            clients,
            sub,
            f"/v1/cases/{sub.case_id}/close",
            {"outcome": "withdrawn"},
            {"X-API-Key": api_key},
            rng,
            deadline,
        )
        # 409: already closed, by an earlier attempt whose answer was lost.
        if answer is not None and answer.status_code in (200, 409):
            sub.close = "closed"
        else:
            sub.close = "gave_up" if answer is None else f"HTTP {answer.status_code}"


async def drive(
    urls: list[str],
    api_key: str,
    run: str,
    count: int,
    progress: Progress,
    *,
    concurrency: int = 16,
    per_case_seconds: float = 300.0,
    seed: int = 0,
    request_timeout: float = 10.0,
    rate: float = 0.0,
    close_every: int = 4,
) -> list[Submission]:
    """Submit `count` cases through the intake instances; returns one record per case.
    Every `close_every`-th case (0: none) is closed right after it is acknowledged.

    With `rate` > 0 the cases are spread at that many per second, so a small run lasts
    long enough for the chaos schedule to hit it while it is under load.
    """
    subs = [Submission(n, f"FAULTS-{run}-{n:06d}", f"faults-{run}-{n:06d}") for n in range(count)]
    queue: asyncio.Queue[Submission] = asyncio.Queue()
    for sub in subs:
        queue.put_nowait(sub)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    clients = [
        httpx.AsyncClient(base_url=url, timeout=request_timeout, limits=limits) for url in urls
    ]

    began = time.monotonic()

    async def worker(index: int) -> None:
        rng = random.Random(f"{seed}-driver-{index}")
        while True:
            try:
                sub = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if rate > 0:  # open loop: case n is due at n / rate seconds
                await asyncio.sleep(max(0.0, began + sub.number / rate - time.monotonic()))
            close = close_every > 0 and sub.number % close_every == 0
            body = case_body(run, sub.number)
            await _submit(clients, api_key, sub, body, rng, per_case_seconds, close)
            progress.finished += 1

    try:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finally:
        for client in clients:
            await client.aclose()
    return subs
