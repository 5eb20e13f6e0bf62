"""The printed table, rendered from the results as they are written to JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

PROCESSES = ("intake", "referral", "notify", "ferretdb", "kafka", "bench")
ISSUE_IMPORT_ROWS = 100_000


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def _ratio(a: Any, b: Any) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b <= 0:
        return "-"
    return f"{a / b:.1f}x"


def _latency(summary: Mapping[str, Any] | None) -> str:
    if not summary or not summary.get("count"):
        return "-"
    return f"p50 {_n(summary.get('p50_ms'), 1)} / p99 {_n(summary.get('p99_ms'), 1)} ms"


def _pipeline(results: Mapping[str, Any], lines: list[str]) -> None:
    config = results.get("config", {})
    pipeline = results.get("pipeline")
    if not pipeline:
        return
    lines.append(
        f"Pipeline: open loop, {_n(config.get('step_seconds'))} s per step, "
        f"{config.get('arrivals')} arrivals; latency from intake's 201 to the event on its "
        "topic (ms)"
    )
    header = (
        f"{'rate/s':>6} {'before':>6} {'sent':>5} {'201':>5} {'err':>4} | "
        f"{'http p50':>8} {'p99':>6} | "
        f"{'offer p50':>9} {'p95':>6} {'p99':>6} {'max':>6} | {'sms p50':>7} {'p95':>6} "
        f"{'p99':>6} {'max':>6} | {'miss':>4} | {'svc':>5} {'ferret':>6} {'kafka':>5} | "
        f"{'load':>4} | verdict"
    )
    lines.append(header)
    lines.append("-" * len(header))
    for step in pipeline.get("steps", []):
        http, offered, sms = step["http"], step["offered"], step["sms"]
        cpu = step["cpu_ms_per_case"]
        verdict = step.get("verdict") or {}
        ok = "ok" if verdict.get("sustained") else "FAIL: " + "; ".join(verdict.get("reasons", []))
        lines.append(
            f"{step['rate']:>6g} {step.get('stored_cases_before', 0):>6} "
            f"{step['requested']:>5} {step['accepted']:>5} "
            f"{sum(step['errors'].values()):>4} | {_n(http['p50_ms'], 0):>8} "
            f"{_n(http['p99_ms'], 0):>6} | {_n(offered['p50_ms'], 0):>9} "
            f"{_n(offered['p95_ms'], 0):>6} {_n(offered['p99_ms'], 0):>6} "
            f"{_n(offered['max_ms'], 0):>6} | {_n(sms['p50_ms'], 0):>7} {_n(sms['p95_ms'], 0):>6} "
            f"{_n(sms['p99_ms'], 0):>6} {_n(sms['max_ms'], 0):>6} | "
            f"{max(step['missing_offered'], step['missing_sms']):>4} | "
            f"{_n(cpu.get('lintas services'), 0):>5} {_n(cpu.get('ferretdb'), 0):>6} "
            f"{_n(cpu.get('kafka'), 0):>5} | {_n(step.get('load_average'), 1):>4} | {ok}"
        )
    top = pipeline.get("highest_sustained_rate")
    lines.append(
        f"Highest rate sustained for {_n(config.get('step_seconds'))} s with p99 < "
        f"{_n(config.get('threshold_ms'))} ms (offer and SMS), no errors, every case complete: "
        + (f"{_n(top)} cases/s" if top else "none")
    )
    top_step = _step_at(results, top)
    if top_step:
        cpu = top_step["cpu_ms_per_case"]
        parts = {
            "FerretDB": cpu.get("ferretdb"),
            "intake+referral+notify": cpu.get("lintas services"),
            "Kafka": cpu.get("kafka"),
        }
        total = sum(v for v in parts.values() if isinstance(v, (int, float)))
        if total > 0:
            lines.append(
                f"CPU one case costs at {_n(top)}/s: "
                + ", ".join(
                    f"{name} {_n(value, 0)} ms ({100 * (value or 0) / total:.0f}%)"
                    for name, value in parts.items()
                )
            )
        counted = (top_step.get("store_commands") or {}).get("total_per_case")
        calibrated = (results.get("store_commands") or {}).get("total_per_case")
        if counted is not None:
            lines.append(
                f"Store commands per case at {_n(top)}/s: {_n(counted, 1)}, what a batch's "
                "cases ask side by side being one command (at 2/s, where a batch holds one "
                f"case: {_n(calibrated, 1)}, below)"
            )
    if pipeline.get("stopped"):
        lines.append(f"Ladder stopped: {pipeline['stopped']}")
    lines.append(
        "svc / ferret / kafka = CPU ms per case of intake+referral+notify / FerretDB / Kafka "
        "over the step and its drain, less each one's idle CPU (measured warm, before the "
        "first step); load = 1-min load average "
        "of the machine at the step's end; before = cases sent earlier in the run (the "
        "store grows)"
    )


def _memory(results: Mapping[str, Any], lines: list[str]) -> None:
    memory = results.get("memory")
    if not memory:
        return
    rows: list[tuple[str, Mapping[str, Any] | None]] = [
        ("idle (after warm-up)", memory.get("idle_rss_mib")),
        (f"peak at {_n(memory.get('top_rate'))}/s", memory.get("peak_rss_mib_at_top_rate")),
        ("peak over all steps", memory.get("peak_rss_mib_all_steps")),
    ]
    lines.append("")
    lines.append("Memory, RSS in MiB " + "".join(f"{p:>10}" for p in PROCESSES))
    for label, values in rows:
        if values:
            lines.append(
                f"  {label:<23}" + "".join(f"{_n(values.get(p), 1):>10}" for p in PROCESSES)
            )


def _store(results: Mapping[str, Any], lines: list[str]) -> None:
    store = results.get("store_commands")
    if not store:
        return
    mix = ", ".join(f"{k} {v:g}" for k, v in sorted(store["per_case"].items(), key=lambda i: -i[1]))
    lines.append("")
    lines.append(
        f"Store commands per case (server-side count over {store['cases']} cases, background "
        f"subtracted): {mix}; total {store['total_per_case']:g}"
    )
    for service, steps in store.get("by_service", {}).items():
        found = ", ".join(f"{k} {v:g}" for k, v in sorted(steps.items(), key=lambda i: -i[1]))
        total = store["by_service_total"][service]
        lines.append(f"  {service} (its own count, by collection.command): {total:g}: {found}")


def _full_reads(results: Mapping[str, Any], lines: list[str]) -> None:
    reads = results.get("full_table_reads")
    if not reads:
        return
    found = ", ".join(f"{table} {n:g}" for table, n in list(reads["per_case"].items())[:8])
    lines.append(
        f"Whole-collection reads per case (FerretDB debug log, {reads['cases']} cases; debug "
        f"logging slows FerretDB, so this run's timings do not count): {found}"
    )


def _baselines(results: Mapping[str, Any], lines: list[str]) -> None:
    base = results.get("baselines")
    if not base:
        return
    lines.append("")
    lines.append("Baselines, same servers, same run")
    rtt = base.get("kafka_roundtrip", {})
    if rtt:
        lines.append(
            f"  (a) Kafka, one {_n(rtt.get('value_bytes'))} B record at a time (acks=all): "
            f"produce->consume {_latency(rtt.get('produce_to_consume'))}; with the offset "
            f"commit every subscriber makes {_latency(rtt.get('produce_to_consume_and_commit'))}"
        )
    store = base.get("store", {})
    if store:
        cmds = sum(store.get("commands_per_case", {}).values())
        lines.append(
            f"  (b) Store, the {cmds:.0f} commands of one case replayed raw by _id: per case "
            f"{_latency(store.get('per_case'))} = "
            f"{_n(store.get('cases_per_second_one_at_a_time'), 1)} cases/s one at a time"
        )
    open_ = base.get("minimal_open", {})
    closed = base.get("minimal_closed", {})
    if open_ and "skipped" not in open_:
        lines.append(
            f"  (c) No-framework pipeline at {_n(open_.get('rate'))}/s: offer "
            f"{_latency(open_.get('offered'))}, sms {_latency(open_.get('sms'))}; CPU "
            f"{_n(open_.get('cpu_ms_per_case'), 2)} ms/case"
            + (
                f"; closed loop ceiling {_n(closed.get('completed_per_second_in_window'), 1)} "
                "cases/s"
                if closed and "skipped" not in closed
                else ""
            )
        )
    elif open_:
        lines.append(f"  (c) skipped: {open_['skipped']}")
    _overhead(results, base, lines)
    broker = base.get("broker_aiokafka", {})
    perf = base.get("broker_producer_performance", {})
    parts = []
    if broker:
        parts.append(
            f"aiokafka producer {_n(broker.get('records_per_second'))} records/s "
            f"({_n(broker.get('mb_per_second'), 1)} MB/s)"
        )
    if perf and "skipped" not in perf:
        parts.append(
            f"Kafka ProducerPerformance {_n(perf.get('records_per_second'))} records/s "
            f"({_n(perf.get('mb_per_second'), 1)} MB/s)"
        )
    elif perf:
        parts.append(f"ProducerPerformance skipped: {perf['skipped']}")
    if parts:
        lines.append(
            "  Broker limit (acks=all, one partition, same record size): " + "; ".join(parts)
        )


def _step_at(results: Mapping[str, Any], rate: Any) -> Mapping[str, Any] | None:
    steps: Sequence[Mapping[str, Any]] = (results.get("pipeline") or {}).get("steps", [])
    return next((s for s in steps if s.get("rate") == rate), None)


def _overhead(results: Mapping[str, Any], base: Mapping[str, Any], lines: list[str]) -> None:
    open_ = base.get("minimal_open", {})
    if not open_ or "skipped" in open_:
        return
    step = _step_at(results, open_.get("rate"))
    if step is None:
        return
    offered, sms = step["offered"], step["sms"]
    lintas_cpu, minimal_cpu = step["cpu_ms_per_case"], open_["server_cpu_ms_per_case"]
    lines.append(
        f"  Overhead Lintas/(c) at {_n(open_.get('rate'))}/s: CPU per case "
        f"{_ratio(step['cpu_ms_per_case'].get('lintas services'), open_.get('cpu_ms_per_case'))}"
        f", offer p50 {_ratio(offered.get('p50_ms'), open_['offered'].get('p50_ms'))}"
        f", sms p50 {_ratio(sms.get('p50_ms'), open_['sms'].get('p50_ms'))}"
        f", FerretDB CPU per case "
        f"{_ratio(lintas_cpu.get('ferretdb'), minimal_cpu.get('ferretdb'))}"
        f", Kafka CPU per case "
        f"{_ratio(lintas_cpu.get('kafka'), minimal_cpu.get('kafka'))}"
    )
    closed = base.get("minimal_closed", {})
    top = (results.get("pipeline") or {}).get("highest_sustained_rate")
    ceiling = closed.get("completed_per_second_in_window") if closed else None
    if top and ceiling:
        lines.append(
            f"  Throughput: Lintas sustains {_n(top)} cases/s; (c) completes {_n(ceiling, 1)} "
            f"cases/s flat out (Lintas/(c) = {top / ceiling:.2f})"
        )


def _import(results: Mapping[str, Any], lines: list[str]) -> None:
    imp = results.get("import")
    if not imp:
        return
    summary = imp.get("importer", {})
    rate = summary.get("rows_per_second")
    lines.append("")
    lines.append(
        f"Bulk import (`lintas import`, concurrency {imp['concurrency']}): {imp['rows']:,} rows "
        f"({imp.get('broken_rows', 0):,} broken on purpose) "
        f"in {_n(imp['seconds'], 1)} s = {_n(rate, 1)} rows/s; created "
        f"{_n(summary.get('created'))}, already present {_n(summary.get('already_present'))}, "
        f"rejected {_n(summary.get('rejected'))}; importer peak "
        f"RSS {_n(imp['importer_peak_rss_mib'], 1)} MiB; intake peak RSS "
        f"{_n(imp['services_peak_rss_mib'].get('intake'), 1)} MiB"
    )
    quarters = imp.get("rss_mib_by_quarter")
    if quarters:
        lines.append(
            "  memory at a quarter, half, three quarters and the end of the import (RSS, MiB): "
            + "; ".join(
                f"{name} {', '.join(_n(v, 1) for v in values)}" for name, values in quarters.items()
            )
        )
    live = imp.get("live")
    if live:
        errors = ", ".join(f"{name} {count}" for name, count in live["errors"].items())
        lines.append(
            f"  live cases meanwhile (one `POST /v1/cases` every {live['interval_s']:g} s, as "
            f"a caseworker's): {_n(live['count'])} accepted, p50 {_n(live['p50_ms'], 1)} ms, "
            f"p99 {_n(live['p99_ms'], 1)} ms, max {_n(live['max_ms'], 1)} ms; errors: "
            f"{errors or 'none'}"
        )
    through = imp.get("end_to_end") or {}
    if through:
        lines.append(
            f"  through the pipeline (the importer's rate counts what intake accepted): "
            f"{_n(through.get('offered'))} of {_n(through['cases'])} imported cases offered, "
            f"the last {_n(through.get('offered_last_after_s'))} s after the import began "
            f"({_n(through.get('offered_rows_per_second'))} rows/s); {_n(through.get('sms'))} "
            f"SMS sent, the last after {_n(through.get('sms_last_after_s'))} s "
            f"({_n(through.get('sms_rows_per_second'))} rows/s; waited at most "
            f"{_n(through.get('waited_at_most_s'))} s)"
        )
    cpu = dict(imp.get("services_cpu_seconds", {}))
    if "importer_cpu_seconds" in imp:
        cpu = {"importer": imp["importer_cpu_seconds"], **cpu}
    if cpu:
        lines.append(
            "  CPU seconds while `lintas import` ran: "
            + ", ".join(f"{name} {_n(seconds, 2)}" for name, seconds in cpu.items())
        )
    if imp.get("timed_out"):
        lines.append("  the import was stopped at its time limit")
    again = imp.get("rerun")
    if again:
        lines.append(
            f"  Second import of the same file: {_n(again['seconds'], 1)} s, created "
            f"{_n(again['importer'].get('created'))}, already present "
            f"{_n(again['importer'].get('already_present'))}, rejected "
            f"{_n(again['importer'].get('rejected'))}"
        )
    for name, check in imp.get("checks", {}).items():
        verdict = "ok" if check["ok"] else "FAILED"
        lines.append(f"  check {name}: {check['actual']} (expected {check['expected']}) {verdict}")
    if imp["rows"] < ISSUE_IMPORT_ROWS and isinstance(rate, (int, float)) and rate > 0:
        hours = ISSUE_IMPORT_ROWS / rate / 3600
        lines.append(
            f"  Issue 6 asks for {ISSUE_IMPORT_ROWS:,} rows: not run by default. EXTRAPOLATED "
            f"linearly (not measured) at this rate: ~{hours:.1f} h, optimistic if the store "
            "slows as it grows. Run it with --import-rows 100000."
        )


def _profile(results: Mapping[str, Any], lines: list[str]) -> None:
    profile = results.get("profile")
    if not profile:
        return
    lines.append("")
    lines.append(
        f"Profile (py-spy, {_n(profile['rate'])}/s for {_n(profile['seconds'])} s; shares of each "
        "process's busy samples; files in .lintas/bench/profiles/)"
    )
    for name, summary in profile.get("services", {}).items():
        if "error" in summary:
            lines.append(f"  {name}: {summary['error']}")
            continue
        if "samples" not in summary:  # FerretDB: Go pprof

            def join(key: str, count: int = 6, found: Mapping[str, Any] = summary) -> str:
                return ", ".join(f"{s['name']} {s['percent']:g}%" for s in found[key][:count])

            lines.append(
                f"  {name} (Go pprof, {summary.get('cpu')} CPU) under each wire command: "
                f"{join('by_command')}; at: {join('landmarks')}"
            )
            lines.append(f"  {'':{len(name)}}  flat by package: {join('self_by_package', 4)}")
            continue
        packages = ", ".join(
            f"{s['name']} {s['percent']:g}%" for s in summary["self_by_package"][:6]
        )
        functions = ", ".join(
            f"{s['name']} {s['percent']:g}%" for s in summary["self_by_function"][:4]
        )
        lines.append(
            f"  {name} ({summary['samples']} busy samples, {summary['waiting_samples']} waiting "
            f"left out) self by package: {packages}"
        )
        lines.append(f"  {'':{len(name)}}  top self frames: {functions}")
        own = ", ".join(f"{s['name']} {s['percent']:g}%" for s in summary["inclusive_lintas"][:6])
        lines.append(f"  {'':{len(name)}}  Lintas code on the stack: {own}")


#: Issue #13's targets: (what, unit, target, True when more is better).
TARGETS = (
    ("store commands per case", "", 12.0, False),
    ("sustained cases/s (p99 < 1 s)", "/s", 100.0, True),
    ("CPU per case, services and store", " ms", 15.0, False),
    ("bulk import rows/s", "/s", 1000.0, True),
)


def target_lines(results: Mapping[str, Any]) -> list[str]:
    """Each issue-13 target with this run's figure: met, or missed and by how much."""
    top = (results.get("pipeline") or {}).get("highest_sustained_rate")
    step = _step_at(results, top)
    cpu = None
    if step is not None:
        per_case = step["cpu_ms_per_case"]
        parts = [per_case.get("lintas services"), per_case.get("ferretdb")]
        cpu = sum(p for p in parts if isinstance(p, (int, float))) if any(parts) else None
    rows = ((results.get("import") or {}).get("importer") or {}).get("rows_per_second")
    figures = [
        (results.get("store_commands") or {}).get("total_per_case"),
        top,
        cpu,
        rows,
    ]
    lines = ["Targets (issue #13), this run"]
    for (what, unit, target, more_is_better), figure in zip(TARGETS, figures, strict=True):
        if not isinstance(figure, (int, float)):
            lines.append(f"  {what}: not measured in this run (target {_n(target)}{unit})")
            continue
        met = figure >= target if more_is_better else figure <= target
        verdict = (
            "met"
            if met
            else f"missed by {_n(abs(target - figure), 1)}{unit} "
            f"({figure / target:.2f} of the target)"
        )
        lines.append(f"  {what}: {_n(figure, 1)}{unit}, target {_n(target)}{unit}: {verdict}")
    quarters = (results.get("import") or {}).get("rss_mib_by_quarter") or {}
    grown = [
        f"{name} {values[3] - values[1]:+.1f} MiB ({(values[3] / values[1] - 1) * 100:+.1f}%)"
        for name, values in quarters.items()
        if len(values) == 4 and values[1] > 0
    ]
    if grown:
        # A figure, not a verdict: a short import ends while the caches still fill.
        lines.append(f"  memory over the import's second half: {', '.join(grown)}")
    closed = ((results.get("baselines") or {}).get("minimal_closed") or {}).get(
        "completed_per_second_in_window"
    )
    if isinstance(top, (int, float)) and isinstance(closed, (int, float)) and closed > 0:
        verdict = "met" if top >= closed else f"missed ({top / closed:.2f} of it)"
        lines.append(f"  sustained rate against (c)'s closed loop {_n(closed, 1)}/s: {verdict}")
    return lines


def render(results: Mapping[str, Any]) -> str:
    """The human-readable table of a run."""
    machine = results.get("machine", {})
    lines = [
        f"Lintas benchmark, {results.get('started_at')} ({_n(results.get('seconds'))} s); "
        f"{machine.get('cpus')} CPUs, load average at start "
        f"{(machine.get('load_average_at_start') or ['-'])[0]}; Kafka {machine.get('kafka')} "
        f"(1 broker), FerretDB {machine.get('ferretdb')} (SQLite); Python {machine.get('python')}",
        f"Command: {results.get('command')}",
    ]
    for note in results.get("notes", []):
        lines.append(f"  * {note}")
    lines.append("")
    _pipeline(results, lines)
    _memory(results, lines)
    _store(results, lines)
    _full_reads(results, lines)
    _baselines(results, lines)
    _import(results, lines)
    _profile(results, lines)
    lines.append("")
    lines.extend(target_lines(results))
    for skipped in results.get("skipped", []):
        lines.append(f"Skipped {skipped}")
    if results.get("error"):
        lines.append(f"RUN FAILED: {results['error']}")
    return "\n".join(lines)
