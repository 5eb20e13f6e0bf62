"""`make bench`: run every phase against fresh servers, print the table, write the JSON.

Phases, in order (each skipped once the time budget is spent):
1. idle window and calibration: a few cases one by one warm the services up and give
   the store commands per case (counted by the server, background subtracted);
2. pipeline: open-loop steps up the rate ladder until a step fails the bar;
3. profile: py-spy on each service during one more step;
4. baselines: raw Kafka round trip, raw store commands, the no-framework pipeline, the
   broker's limit (services idle meanwhile);
5. bulk import through `lintas import`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import structlog
from lintas_deploy.ferretdb import FERRETDB_VERSION
from lintas_deploy.kafka import KAFKA_VERSION
from lintas_shared.topics import SOURCE_TOPICS

from lintas_bench import baselines, profiling, storeops
from lintas_bench.bulk_import import run_import
from lintas_bench.children import kill_leftovers
from lintas_bench.config import BenchConfig, from_args
from lintas_bench.load import LoadContext, StepResult, run_step
from lintas_bench.observe import Observer, consumer_lag
from lintas_bench.report import render
from lintas_bench.resources import Sampler, idle_rate
from lintas_bench.stack import GROUPS, SERVICES, Stack, running_stack
from lintas_bench.stats import StepVerdict, bisect_rate, highest_sustained, next_rates


def _say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Budget:
    """The run's time budget: phases check it before they start."""

    def __init__(self, seconds: float) -> None:
        self.began = time.monotonic()
        self.seconds = seconds

    @property
    def elapsed(self) -> float:
        """Seconds since the run began."""
        return time.monotonic() - self.began

    def left(self) -> float:
        """Seconds left (negative once spent)."""
        return self.seconds - self.elapsed


def _step_line(step: StepResult) -> str:
    verdict = step.verdict
    ok = (
        "ok"
        if verdict and verdict.sustained
        else "FAIL " + ", ".join(verdict.reasons if verdict else ())
    )
    return (
        f"{step.label}: {step.rate:g}/s sent {step.requested} accepted {step.accepted} "
        f"offered p99 {step.offered.p99_ms} ms, sms p99 {step.sms.p99_ms} ms -> {ok}"
    )


async def _phases(
    config: BenchConfig,
    stack: Stack,
    results: dict[str, Any],
    budget: Budget,
    tools_dir: Path | None,
) -> None:
    run = uuid.uuid4().hex[:6]
    pids = {name: stack.pids[name] for name in (*SERVICES, "ferretdb", "kafka")}
    pids["bench"] = os.getpid()
    sampler = Sampler(pids)
    sampler.start()
    observer = Observer(stack.kafka_bootstrap)
    await observer.start()
    ctx = LoadContext(
        intake_url=stack.intake_url,
        api_key=stack.ngo_api_key,
        observer=observer,
        sampler=sampler,
        run=run,
        max_in_flight=config.max_in_flight,
        arrivals=config.arrivals,
        seed=config.seed,
        threshold_ms=config.threshold_ms,
    )
    try:
        await _calibrate(config, stack, ctx, results)
        # Baselines first, while the store is small and nothing is queued: a failed load
        # step leaves a backlog (and a bigger store) behind that would distort them.
        if "baselines" not in config.skip:
            await _baselines(config, stack, ctx, results, tools_dir, sampler)
        top = (
            await _pipeline(config, stack, ctx, results, budget)
            if "pipeline" not in config.skip
            else None
        )
        results["memory"]["top_rate"] = top
        if config.profile and "profile" not in config.skip and budget.left() > 0:
            failed = (results.get("pipeline") or {}).get("lowest_failed_rate")
            await _profile(config, stack, ctx, results, top, failed)
        if "import" not in config.skip and budget.left() > 0:
            lag = await _settle(stack, config.settle_seconds)
            _say(f"bulk import: {config.import_rows} rows through `lintas import`")
            seen_before = (len(observer.offered), len(observer.sms))
            import_started = time.time()
            results["import"] = await run_import(
                intake_url=stack.intake_url,
                api_key=stack.ngo_api_key,
                mongodb_uri=stack.mongodb_uri,
                rows=config.import_rows,
                bad_every=config.import_bad_every,
                rerun=config.import_rerun,
                concurrency=config.import_concurrency,
                work_dir=config.output_dir.resolve(),
                run=run,
                sampler=sampler,
                time_limit=max(120.0, budget.left() + 120.0),
            )
            results["import"]["consumer_lag_before"] = lag
            results["import"]["end_to_end"] = await _import_end_to_end(
                observer, seen_before, import_started, results["import"]
            )
            results["import"].pop("live_case_ids", None)
        if config.ferretdb_log_level == "debug":
            results["full_table_reads"] = _full_table_reads(stack, ctx, results)
        for phase in ("profile", "baselines", "import"):
            if phase not in results and phase not in config.skip:
                results.setdefault("skipped", []).append(f"{phase}: time budget spent")
    finally:
        await observer.stop()
        await sampler.stop()


#: Seconds without a new offer or SMS after which the import's wait for them ends, and
#: the longest wait (a 100,000-row import takes the pipeline far longer than the importer).
IMPORT_QUIET_SECONDS = 60.0
IMPORT_WAIT_SECONDS = 600.0


async def _import_end_to_end(
    observer: Observer,
    seen_before: tuple[int, int],
    started: float,
    imported: Mapping[str, Any],
) -> dict[str, Any]:
    """The import through the whole pipeline: the importer's rate counts the rows intake
    accepted, while referral and notify may still be behind. Waits (bounded) for the
    imported cases' offers and SMS on the topics; reports how many came, and when the
    last one did."""
    created = int((imported.get("importer") or {}).get("created") or 0)
    if not created:
        return {}
    # The live cases submitted during the import are not the import's.
    live = set(imported.get("live_case_ids") or ())
    _say(f"import: waiting for the {created} imported cases' offers and SMS")
    waited_from = time.time()
    last_count, last_change = -1, waited_from
    while True:
        offered = len(observer.offered) - seen_before[0] - len(live & observer.offered.keys())
        sms = len(observer.sms) - seen_before[1] - len(live & observer.sms.keys())
        if offered >= created and sms >= created:
            break
        now = time.time()
        if offered + sms != last_count:
            last_count, last_change = offered + sms, now
        if now - last_change > IMPORT_QUIET_SECONDS or now - waited_from > IMPORT_WAIT_SECONDS:
            break
        await asyncio.sleep(1.0)
    found: dict[str, Any] = {
        "cases": created,
        "offered": offered,
        "sms": sms,
        "waited_at_most_s": IMPORT_WAIT_SECONDS,
    }
    for name, seen in (("offered", observer.offered), ("sms", observer.sms)):
        times = [t for case_id, t in seen.items() if t >= started and case_id not in live]
        if times:
            seconds = max(times) - started
            found[f"{name}_last_after_s"] = round(seconds, 1)
            found[f"{name}_rows_per_second"] = round(len(times) / seconds, 1) if seconds else None
    return found


async def _calibrate(
    config: BenchConfig, stack: Stack, ctx: LoadContext, results: dict[str, Any]
) -> None:
    _say(f"idle window ({config.idle_seconds:g}s), then {config.calibration_cases} cases at 2/s")
    urls = {
        name: f"http://127.0.0.1:{getattr(config.ports, name)}"
        for name in ("intake", "referral", "notify")
    }
    before = await storeops.command_totals(stack.mongodb_uri)
    services_before = await storeops.service_commands(urls)
    idle_window = ctx.sampler.open()
    await asyncio.sleep(config.idle_seconds)
    ctx.sampler.close(idle_window)
    idle = storeops.diff(await storeops.command_totals(stack.mongodb_uri), before)
    services_after = await storeops.service_commands(urls)
    services_idle = {
        name: storeops.diff(services_after[name], services_before[name]) for name in urls
    }
    ctx.idle_cpu_rate = idle_rate(idle_window)
    results["idle_cpu_seconds_per_second"] = ctx.idle_cpu_rate
    began = time.monotonic()
    before = await storeops.command_totals(stack.mongodb_uri)
    services_before = await storeops.service_commands(urls)
    step = await run_step(
        ctx,
        rate=2.0,
        seconds=config.calibration_cases / 2.0,
        drain_seconds=config.drain_seconds,
        label="calibration",
    )
    # Intake applies the offer and the SMS news to its case after both were published.
    await asyncio.sleep(3.0)
    work = storeops.diff(await storeops.command_totals(stack.mongodb_uri), before)
    services_after = await storeops.service_commands(urls)
    work_seconds = time.monotonic() - began
    per_case = storeops.per_case(work, work_seconds, idle, config.idle_seconds, step.accepted)
    by_service = {
        name: storeops.per_case(
            storeops.diff(services_after[name], services_before[name]),
            work_seconds,
            services_idle[name],
            config.idle_seconds,
            step.accepted,
        )
        for name in urls
    }
    results["store_commands"] = {
        "per_case": per_case,
        "total_per_case": round(sum(per_case.values()), 1),
        "cases": step.accepted,
        "idle_per_second": {k: round(v / config.idle_seconds, 2) for k, v in idle.items()},
        "by_service": by_service,
        "by_service_total": {n: round(sum(v.values()), 1) for n, v in by_service.items()},
        "method": (
            "FerretDB serverStatus metrics.commands totals around the calibration cases, "
            "minus the idle rate over the same time, divided by the cases"
        ),
    }
    results["calibration"] = step.public()
    results["memory"] = {"idle_rss_mib": ctx.sampler.snapshot_rss()}


async def _step_commands(
    stack: Stack,
    before: Mapping[str, int],
    began: float,
    results: Mapping[str, Any],
    cases: int,
) -> dict[str, Any]:
    """Store commands per case over a load step, as the calibration counts them (the
    idle rate subtracted): at load, what a batch's cases ask side by side is one
    command. Counted 3 s after the step's last SMS, when intake has applied its news."""
    await asyncio.sleep(3.0)
    work = storeops.diff(await storeops.command_totals(stack.mongodb_uri), before)
    idle_per_second = results.get("store_commands", {}).get("idle_per_second", {})
    per_case = storeops.per_case(work, time.monotonic() - began, idle_per_second, 1.0, cases)
    return {"per_case": per_case, "total_per_case": round(sum(per_case.values()), 1)}


async def _settle(stack: Stack, limit: float) -> dict[str, int]:
    """Wait until the services have consumed every record (lag 0), at most `limit` s."""
    deadline = time.monotonic() + limit
    while True:
        lag = await consumer_lag(stack.kafka_bootstrap, list(GROUPS.values()), list(SOURCE_TOPICS))
        if not any(lag.values()) or time.monotonic() >= deadline:
            return lag
        await asyncio.sleep(1.0)


async def _pipeline(
    config: BenchConfig,
    stack: Stack,
    ctx: LoadContext,
    results: dict[str, Any],
    budget: Budget,
) -> float | None:
    steps: list[dict[str, Any]] = []
    verdicts: list[StepVerdict] = []
    results["pipeline"] = {"steps": steps}
    # Idle CPU again, now that the processes are warm: what Kafka's JVM burns just after
    # its start (compiling, collecting) is several times its later background, and
    # subtracting that from every step left Kafka at 0 ms a case in full runs.
    await _settle(stack, config.settle_seconds)
    idle_window = ctx.sampler.open()
    await asyncio.sleep(config.idle_seconds)
    ctx.sampler.close(idle_window)
    ctx.idle_cpu_rate = idle_rate(idle_window)
    results["pipeline"]["idle_cpu_seconds_per_second"] = ctx.idle_cpu_rate

    async def step(rate: float, label: str) -> bool:
        lag = await _settle(stack, config.settle_seconds)
        _say(f"pipeline: {rate:g} cases/s for {config.step_seconds:g}s ({label})")
        commands_before = await storeops.command_totals(stack.mongodb_uri)
        began = time.monotonic()
        result = await run_step(
            ctx,
            rate=rate,
            seconds=config.step_seconds,
            drain_seconds=config.drain_seconds,
            label=label,
        )
        _say(_step_line(result))
        data = result.public()
        data["consumer_lag_before"] = lag
        data["store_commands"] = await _step_commands(
            stack, commands_before, began, results, result.accepted
        )
        steps.append(data)
        assert result.verdict is not None
        verdicts.append(result.verdict)
        return result.verdict.sustained

    def time_for_a_step() -> bool:
        return budget.left() >= config.step_seconds + config.drain_seconds

    passed: float | None = None
    failed: float | None = None
    for rate in next_rates(config.rates, config.step_factor, config.max_rate):
        if not time_for_a_step():
            results["pipeline"]["stopped"] = f"time budget spent before {rate:g}/s"
            break
        if await step(rate, "ladder"):
            passed = rate
        else:
            failed = rate
            results["pipeline"]["stopped"] = f"{rate:g}/s failed"
            break
    for _ in range(config.refine_steps if failed is not None else 0):
        assert failed is not None
        rate_ = bisect_rate(passed, failed, config.rate_granularity)
        if rate_ is None or not time_for_a_step():
            break
        if await step(rate_, "bisect"):
            passed = rate_
        else:
            failed = rate_
    top = highest_sustained(verdicts)
    results["pipeline"]["highest_sustained_rate"] = top
    results["pipeline"]["lowest_failed_rate"] = min(
        (v.rate for v in verdicts if not v.sustained), default=None
    )
    peak_step = next((s for s in steps if s["rate"] == top), None)
    results["memory"]["peak_rss_mib_at_top_rate"] = peak_step["peak_rss_mib"] if peak_step else None
    overall: dict[str, float] = {}
    for s in steps:
        for name, value in s["peak_rss_mib"].items():
            overall[name] = max(overall.get(name, 0.0), value)
    results["memory"]["peak_rss_mib_all_steps"] = overall
    return top


async def _profile(
    config: BenchConfig,
    stack: Stack,
    ctx: LoadContext,
    results: dict[str, Any],
    top: float | None,
    failed: float | None,
) -> None:
    # At the top sustained rate (a failing rate would measure a backlog and grow the
    # store); at the first failing rate when none was sustained.
    rate = config.profile_rate or top or failed or min(config.rates)
    _say(f"profile: py-spy on the services during {config.profile_seconds:g}s at {rate:g}/s")
    service_pids = {name: stack.pids[name] for name in SERVICES}
    recording = asyncio.create_task(
        profiling.record(service_pids, config.profile_seconds + 2.0, config.profile_dir.resolve())
    )
    go_recording = asyncio.create_task(
        profiling.record_go(
            stack.ferretdb_debug_url,
            config.profile_seconds,
            config.profile_dir.resolve() / "ferretdb.pprof",
        )
    )
    await _settle(stack, config.settle_seconds)
    await asyncio.sleep(1.0)  # py-spy attaches before the first arrival
    step = await run_step(
        ctx,
        rate=rate,
        seconds=config.profile_seconds,
        drain_seconds=config.drain_seconds,
        label="profiled",
    )
    files = await recording
    try:
        go_summary = await go_recording
    except Exception as exc:  # a profile that failed must not sink the run
        go_summary = {"error": f"{type(exc).__name__}: {exc}"}
    summaries: dict[str, Any] = {}
    for name, found in files.items():
        if isinstance(found, Path):
            summaries[name] = asdict(profiling.summarise_speedscope(name, found))
        else:
            summaries[name] = {"error": found}
    summaries["ferretdb"] = go_summary
    results["profile"] = {
        "rate": rate,
        "seconds": config.profile_seconds,
        "step": step.public(),
        "services": summaries,
        "note": (
            "services: py-spy --gil at 100 Hz (samples of the thread running Python); "
            "ferretdb: Go pprof CPU profile, flat shares"
        ),
    }


async def _baselines(
    config: BenchConfig,
    stack: Stack,
    ctx: LoadContext,
    results: dict[str, Any],
    tools_dir: Path | None,
    sampler: Sampler,
) -> None:
    shape = ctx.observer.shape
    out: dict[str, Any] = {"record_shape": asdict(shape)}
    # The services idle meanwhile: a backlog left by the last step must be gone first.
    out["consumer_lag_before"] = await _settle(stack, config.settle_seconds)
    results["baselines"] = out
    _say(f"baseline (a): {config.roundtrips} raw Kafka round trips")
    out["kafka_roundtrip"] = await baselines.kafka_roundtrip(
        stack.kafka_bootstrap, shape, config.roundtrips
    )
    mix = results.get("store_commands", {}).get("per_case", {})
    _say(f"baseline (b): the store commands of {config.store_cases} cases, raw")
    out["store"] = await baselines.store_ops(
        stack.mongodb_uri, mix, config.store_cases, shape.value_bytes
    )
    # (c) open loop at the first rate of the ladder, to set beside Lintas' step there.
    rate = min(config.rates)
    for mode, label in (("open", "minimal_open"), ("closed", "minimal_closed")):
        _say(
            f"baseline (c): minimal pipeline, {mode} loop"
            + (f" at {rate:g}/s" if mode == "open" else "")
        )
        window = sampler.open()
        found = await baselines.minimal_pipeline(
            bootstrap=stack.kafka_bootstrap,
            mongo=stack.mongodb_uri,
            outbox=stack.state_dir / "minimal-outbox.jsonl",
            mode=mode,
            rate=rate,
            seconds=config.minimal_seconds,
            payload_bytes=max(shape.value_bytes, 1),
            partitions=config.topic_partitions,
        )
        sampler.close(window)
        cases = found.get("accepted") or 0
        net = window.net_cpu_ms_per_case(cases, ctx.idle_cpu_rate)
        found["server_cpu_ms_per_case"] = {name: net.get(name) for name in ("ferretdb", "kafka")}
        out[label] = found
    _say("broker limit: aiokafka max produce, Kafka ProducerPerformance")
    out["broker_aiokafka"] = await baselines.aiokafka_max_produce(
        stack.kafka_bootstrap, shape, config.broker_records
    )
    if tools_dir is None:
        out["broker_producer_performance"] = {"skipped": "kafka-tools jar not available (mvn)"}
    else:
        out["broker_producer_performance"] = await baselines.producer_performance(
            stack.kafka_bootstrap,
            tools_dir,
            _kafka_jars(),
            max(shape.value_bytes, 1),
            config.broker_records,
        )


def _full_table_reads(stack: Stack, ctx: LoadContext, results: dict[str, Any]) -> dict[str, Any]:
    """Diagnosis mode: whole-collection reads per case, from FerretDB's debug log."""
    cases = ctx.submitted + int((results.get("import") or {}).get("rows", 0))
    with (stack.state_dir / "logs" / "ferretdb.log").open(errors="replace") as log:
        counts = storeops.full_table_reads(log)
    return {
        "cases": cases,
        "per_case": {table: round(n / cases, 2) for table, n in counts.items()} if cases else {},
        "note": "SELECTs without WHERE in FerretDB's debug log (background loops included)",
    }


def _cache_dir() -> Path:
    return Path(os.environ.get("LINTAS_CACHE_DIR", ".lintas/cache")).resolve()


def _kafka_jars() -> Path:
    return _cache_dir() / "kafka" / "jars"


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "kafka": KAFKA_VERSION,
        "ferretdb": FERRETDB_VERSION,
    }


def _write(config: BenchConfig, results: dict[str, Any], table: str) -> Path:
    out = config.output_dir.resolve()
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(results, indent=2, default=str) + "\n"
    latest = out / "latest.json"
    latest.write_text(text)
    (out / f"bench-{stamp}.json").write_text(text)
    (out / "latest.txt").write_text(table + "\n")
    return latest


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 0 when every phase ran (whatever the figures say) and the
    import's outcome checks held.

    `--render FILE` prints the table of a saved run instead (no servers are started).
    """
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--render"] and len(args) == 2:
        print(render(json.loads(Path(args[1]).read_text())))
        return 0
    config = from_args(argv)
    # Library log lines (topic creation, ...) go to stderr, and only warnings: stdout
    # carries the table alone.
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    # SIGTERM unwinds like Ctrl-C, so every process we started is stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    budget = Budget(config.budget_seconds)
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "make bench"
        + (" BENCH_ARGS='" + " ".join(sys.argv[1:]) + "'" if sys.argv[1:] else ""),
        "machine": _machine(),
        "config": json.loads(json.dumps(asdict(config), default=str)),
    }
    tools_dir = None
    if "baselines" not in config.skip:
        _say("Kafka's tools jar (ProducerPerformance), cached under .lintas/cache/bench")
        tools_dir = baselines.provision_kafka_tools(_cache_dir() / "bench")
    failed = False
    try:
        with running_stack(config, _say) as stack:
            results["notes"] = list(stack.notes)
            asyncio.run(_phases(config, stack, results, budget, tools_dir))
    except KeyboardInterrupt:
        results["error"] = "interrupted"
        failed = True
    except (Exception, asyncio.CancelledError) as exc:
        results["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        failed = True
    leftovers = kill_leftovers()
    if leftovers:
        _say(f"killed child processes left running by the interruption: {leftovers}")
    if (results.get("import") or {}).get("checks_passed") is False:
        failed = True  # a wrong outcome, not a slow one: the import lost or doubled rows
    results["seconds"] = round(budget.elapsed, 1)
    table = render(results)
    path = _write(config, results, table)
    print(table, flush=True)
    _say(f"results in {path} (table in {path.with_name('latest.txt')})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
