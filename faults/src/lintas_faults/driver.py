"""The NGO client: submits cases concurrently, retrying the same request until answered.

Every case has its own `Idempotency-Key` and `external_ref`. On a connection error, a
timeout, a 5xx or a 429 the same request (same key, same body) is sent again with
backoff, to either intake instance, until it is answered 201 (or 200) or the per-case
time bound passes. A case counts as acknowledged once a 201/200 named its id.
"""

from __future__ import annotations

import asyncio
import copy
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

BASE_CASE: dict[str, Any] = {
    "worker": {
        "full_name": "Contoh Pekerja",
        "phone": "+6281234567890",
        "preferred_language": "id",
        "date_of_birth": "1994-05-17",
        "gender": "female",
        "home_region": "Lampung Timur, Lampung",
        "current_country": "ID",
    },
    "employment": {
        "country": "HK",
        "sector": "domestic_work",
        "employer_name": "Contoh Majikan",
        "placement_agency": "PT Contoh Penempatan",
        "started_on": "2023-02-01",
        "ended_on": "2026-08-31",
    },
    "claims": [
        {
            "type": "unpaid_wages",
            "amount": {"currency": "HKD", "value": "12000.00"},
            "arose_on": "2026-08-31",
            "description": "Gaji tiga bulan terakhir tidak dibayar",
        }
    ],
    "consent": {
        "text_version": "lintas-consent-id-1",
        "language": "id",
        "given_at": "2026-09-15T09:30:00+07:00",
        "channel": "in_person",
        "taken_by": "caseworker-17",
        "purposes": ["legal_referral", "sms_updates"],
        "share_with_countries": ["HK"],
    },
}
RETRYABLE = {429, 500, 502, 503, 504}


def case_body(run: str, number: int) -> dict[str, Any]:
    """The example case with its own external_ref and phone number."""
    doc = copy.deepcopy(BASE_CASE)
    doc["external_ref"] = f"FAULTS-{run}-{number:06d}"
    doc["worker"]["phone"] = f"+62813{number:07d}"
    return doc


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


async def _submit(
    clients: list[httpx.AsyncClient],
    api_key: str,
    sub: Submission,
    body: dict[str, Any],
    rng: random.Random,
    per_case_seconds: float,
) -> None:
    headers = {"X-API-Key": api_key, "Idempotency-Key": sub.idempotency_key}
    deadline = time.monotonic() + per_case_seconds
    delay = 0.2
    while True:
        sub.attempts += 1
        client = rng.choice(clients)
        try:
            response = await client.post("/v1/cases", json=body, headers=headers)
        except httpx.HTTPError as exc:
            sub.errors.append(type(exc).__name__)
        else:
            if response.status_code in (200, 201):
                data = response.json()
                sub.case_id, sub.reference = data["id"], data.get("reference")
                sub.outcome = "acknowledged"
                return
            if response.status_code == 409 and "existing_case_id" in response.text:
                sub.outcome = "conflict"  # the external_ref exists under another key
                sub.case_id = response.json().get("existing_case_id")
                return
            if response.status_code not in RETRYABLE:
                sub.outcome = "refused"
                sub.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            sub.errors.append(f"HTTP {response.status_code}")
        if time.monotonic() + delay > deadline:
            sub.outcome = "gave_up"
            return
        await asyncio.sleep(delay * (0.5 + rng.random()))
        delay = min(delay * 2, 3.0)


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
) -> list[Submission]:
    """Submit `count` cases through the intake instances; returns one record per case.

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
            await _submit(clients, api_key, sub, case_body(run, sub.number), rng, per_case_seconds)
            progress.finished += 1

    try:
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    finally:
        for client in clients:
            await client.aclose()
    return subs
