"""Open-loop load through intake's public API, and what each case took end to end.

Arrivals are fixed by the clock before a step starts (`open_loop_schedule`): a slow
answer never delays the next request, so queueing in the system shows up as latency
instead of being hidden by a client that waits (no coordinated omission). Requests in
flight are capped; an arrival beyond the cap is counted as an error, never queued.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from lintas_intake.entrypoints.examples import example_submission

from lintas_bench.http_client import HttpClientError, LeanHttpClient
from lintas_bench.observe import Observer
from lintas_bench.resources import Sampler, mib
from lintas_bench.stats import (
    Arrivals,
    LatencySummary,
    StepVerdict,
    judge_step,
    open_loop_schedule,
    percentile,
    summarise,
)

#: Processes whose CPU counts as "Lintas" per case.
SERVICE_NAMES = ("intake", "referral", "notify")


def case_document(run: str, n: int) -> dict[str, Any]:
    """A valid case like the README's example, with a generated worker and phone.

    Every case has its own phone (notify caps SMS per phone) and external_ref. The
    names and numbers are made up and are never printed.
    """
    return example_submission(
        f"BENCH-{run}-{n:07d}", f"+62812{n % 10**8:08d}", full_name=f"Pekerja Uji {n:07d}"
    )


@dataclass
class Outcome:
    """One arrival: when it was due, sent and answered, and what came back."""

    due_lag: float
    sent_at: float = 0.0
    answered_at: float = 0.0
    status: int | None = None
    error: str | None = None
    case_id: str | None = None


@dataclass
class StepResult:
    """Everything measured in one load step."""

    label: str
    rate: float
    seconds: float
    #: Cases sent in this run before the step (the store grows, and some reads with it).
    stored_cases_before: int
    #: Seconds into the step when it was stopped as hopeless, or None.
    aborted_at_s: float | None
    requested: int
    accepted: int
    errors: dict[str, int]
    achieved_rate: float
    schedule_lag_p99_ms: float | None
    http: LatencySummary
    offered: LatencySummary
    sms: LatencySummary
    missing_offered: int
    missing_sms: int
    duplicates_seen: dict[str, int]
    drain_seconds: float
    cpu_seconds: dict[str, float]
    cpu_ms_per_case: dict[str, float | None]
    cpu_ms_per_case_gross: dict[str, float]
    peak_rss_mib: dict[str, float]
    load_average: float
    verdict: StepVerdict | None = None
    case_ids: list[str] = field(default_factory=list, repr=False)

    def public(self) -> dict[str, Any]:
        """The result as JSON-ready data (without the case ids)."""
        data = asdict(self)
        data.pop("case_ids")
        return data


@dataclass
class LoadContext:
    """What a load step needs: where to send, who watches, what samples."""

    intake_url: str
    api_key: str
    observer: Observer
    sampler: Sampler
    run: str
    max_in_flight: int
    arrivals: Arrivals
    seed: int
    threshold_ms: float
    #: CPU seconds per second each process burns when idle, subtracted per case.
    idle_cpu_rate: dict[str, float] = field(default_factory=dict)
    _counter: int = 0

    @property
    def submitted(self) -> int:
        """Cases this context has sent so far."""
        return self._counter

    def next_numbers(self, count: int) -> range:
        """Fresh case numbers (external_refs never repeat within a run)."""
        start = self._counter
        self._counter += count
        return range(start, start + count)


async def _post(
    client: LeanHttpClient, body: bytes, outcome: Outcome, headers: dict[str, str]
) -> None:
    outcome.sent_at = time.time()
    try:
        answer = await client.post("/v1/cases", body, headers)
    except (HttpClientError, OSError) as exc:
        outcome.answered_at = time.time()
        outcome.error = type(exc).__name__
        return
    outcome.answered_at = time.time()
    outcome.status = answer.status
    if answer.status == 201:
        outcome.case_id = str(json.loads(answer.body)["id"])
    else:
        outcome.error = f"HTTP {answer.status}"


async def run_step(
    ctx: LoadContext,
    *,
    rate: float,
    seconds: float,
    drain_seconds: float,
    label: str,
    required_seconds: float | None = None,
) -> StepResult:
    """Send `rate` cases a second for `seconds`, then wait up to `drain_seconds` for each
    accepted case's referral offer and SMS; judge the step against the threshold."""
    schedule = open_loop_schedule(rate, seconds, ctx.arrivals, ctx.seed)
    stored_before = ctx.submitted
    numbers = ctx.next_numbers(len(schedule))
    # Prepared before the clock starts, so building bodies never delays an arrival.
    bodies = [json.dumps(case_document(ctx.run, n)).encode() for n in numbers]
    keys = [f"bench-{uuid.uuid4()}" for _ in numbers]
    outcomes: list[Outcome] = []
    tasks: set[asyncio.Task[None]] = set()
    window = ctx.sampler.open()
    loop = asyncio.get_running_loop()
    async with LeanHttpClient(
        ctx.intake_url,
        headers={"X-API-Key": ctx.api_key, "Content-Type": "application/json"},
        max_connections=ctx.max_in_flight,
        timeout=60.0,
    ) as client:
        began = loop.time() + 0.05
        began_wall = time.time() + 0.05
        # Once more than this many cases are later than the bar, p99 over the whole step
        # can only fail: stop sending, so a hopeless step leaves a smaller backlog.
        hopeless = max(3, math.ceil(0.02 * len(schedule)) + 1)
        aborted_at: float | None = None
        next_check = began + 1.0
        for offset, body, key in zip(schedule, bodies, keys, strict=True):
            delay = began + offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if loop.time() >= next_check:
                next_check = loop.time() + 0.5
                # A second's margin over the bar, for the observer's own reading delay.
                cutoff = time.time() - ctx.threshold_ms / 1000.0 - 1.0
                if _late(outcomes, ctx, cutoff) >= hopeless:
                    aborted_at = round(loop.time() - began, 1)
                    break
            outcome = Outcome(due_lag=max(0.0, loop.time() - (began + offset)))
            outcomes.append(outcome)
            if len(tasks) >= ctx.max_in_flight:
                outcome.error = "client in-flight cap"
                continue
            task = asyncio.create_task(_post(client, body, outcome, {"Idempotency-Key": key}))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        sent_seconds = max(time.time() - began_wall, 1e-6)
        if tasks:
            await asyncio.gather(*list(tasks))
    accepted = [o for o in outcomes if o.case_id is not None]
    ids = [o.case_id for o in accepted if o.case_id is not None]
    drain_started = time.monotonic()
    # An aborted step has failed already: a short look at what still completes will do.
    deadline = drain_started + (min(drain_seconds, 10.0) if aborted_at else drain_seconds)
    while time.monotonic() < deadline:
        if ctx.observer.failed() is not None:
            raise RuntimeError(f"the topic observer stopped: {ctx.observer.failed()!r}")
        if all(i in ctx.observer.offered and i in ctx.observer.sms for i in ids):
            break
        await asyncio.sleep(0.2)
    drained = time.monotonic() - drain_started
    ctx.sampler.close(window)

    def latencies(seen: dict[str, float]) -> list[float]:
        return [
            max(0.0, seen[o.case_id] - o.answered_at)
            for o in accepted
            if o.case_id is not None and o.case_id in seen
        ]

    offered = summarise(latencies(ctx.observer.offered))
    sms = summarise(latencies(ctx.observer.sms))
    errors = Counter(o.error for o in outcomes if o.error is not None)
    missing_offered = sum(1 for i in ids if i not in ctx.observer.offered)
    missing_sms = sum(1 for i in ids if i not in ctx.observer.sms)
    services_cpu = {n: window.cpu.get(n, 0.0) for n in window.cpu}
    gross = {
        name: round(1000.0 * cpu / len(accepted), 2) if accepted else 0.0
        for name, cpu in services_cpu.items()
    }
    gross["lintas services"] = round(sum(gross.get(name, 0.0) for name in SERVICE_NAMES), 2)
    per_case = window.net_cpu_ms_per_case(len(accepted), ctx.idle_cpu_rate)
    per_case["lintas services"] = (
        round(sum(per_case.get(name) or 0.0 for name in SERVICE_NAMES), 2) if accepted else None
    )
    result = StepResult(
        label=label,
        rate=rate,
        seconds=seconds,
        stored_cases_before=stored_before,
        aborted_at_s=aborted_at,
        requested=len(outcomes),
        accepted=len(accepted),
        errors=dict(errors),
        achieved_rate=round(len(outcomes) / sent_seconds, 2),
        schedule_lag_p99_ms=_ms(percentile([o.due_lag for o in outcomes], 99)),
        http=summarise([o.answered_at - o.sent_at for o in outcomes if o.status is not None]),
        offered=offered,
        sms=sms,
        missing_offered=missing_offered,
        missing_sms=missing_sms,
        duplicates_seen=dict(ctx.observer.duplicates),
        drain_seconds=round(drained, 1),
        cpu_seconds=services_cpu,
        cpu_ms_per_case=per_case,
        cpu_ms_per_case_gross=gross,
        peak_rss_mib=mib(window),
        load_average=round(os.getloadavg()[0], 2),
        case_ids=ids,
    )
    result.verdict = judge_step(
        rate=rate,
        requested=result.requested,
        accepted=result.accepted,
        errors=sum(errors.values()),
        missing=max(missing_offered, missing_sms),
        p99_ms=[offered.p99_ms, sms.p99_ms],
        threshold_ms=ctx.threshold_ms,
        duration_s=seconds,
        required_duration_s=required_seconds if required_seconds is not None else seconds,
        aborted=aborted_at is not None,
    )
    return result


def _late(outcomes: list[Outcome], ctx: LoadContext, answered_before: float) -> int:
    """Requests or cases already later than the bar: answered before `answered_before`
    (epoch s) and still missing an end point, or still unanswered since then."""
    late = 0
    for o in outcomes:
        if o.status is None and o.error is None:
            late += 0.0 < o.sent_at < answered_before
        elif o.case_id is not None and o.answered_at < answered_before:
            late += o.case_id not in ctx.observer.offered or o.case_id not in ctx.observer.sms
    return late


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 1)


def bench_pid() -> int:
    """This process: the load generator's own CPU is reported too (it shares the cores)."""
    return os.getpid()
