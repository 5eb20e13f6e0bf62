"""Bulk import: N generated rows through `lintas import`, its rate and its memory.

The importer runs as its own process, exactly as an operator runs it (`lintas import
FILE`), with the API key in `LINTAS_API_KEY` (never on the command line). Its own
summary (rows/s, counts) is read from its output, and its peak resident memory is
sampled from outside with psutil, as are the services'. With broken
rows (`--import-bad-every`) and a second pass (`--import-rerun`) it also checks issue 3's
promise: exactly the good rows stored, once.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from lintas_intake.settings import IntakeSettings
from lintas_shared.mongo import make_mongo_client
from lintas_tools.import_samples import write_import_csv

from lintas_bench.children import reap, spawn
from lintas_bench.resources import MIB, Sampler, mib, rss_bytes


async def run_import(
    *,
    intake_url: str,
    api_key: str,
    mongodb_uri: str,
    rows: int,
    bad_every: int,
    rerun: bool,
    concurrency: int,
    work_dir: Path,
    run: str,
    sampler: Sampler,
    time_limit: float,
) -> dict[str, Any]:
    """Import `rows` rows (every `bad_every`-th broken on purpose), then check the outcome:
    the broken rows refused with their field named, every good row stored exactly once,
    and (with `rerun`) a second import of the same file creating nothing. Returns the
    importer's summary, measured memory and the checks."""
    source = work_dir / f"import-{rows}.csv"
    prefix = f"IMPORT-{run}"
    bad = write_import_csv(source, rows, bad_every, prefix, distinct_workers=True)
    report_path = work_dir / "import-errors.csv"
    try:
        result: dict[str, Any] = {"rows": rows, "broken_rows": len(bad), "concurrency": concurrency}
        result |= await _import_once(
            source, intake_url, api_key, report_path, concurrency, sampler, time_limit
        )
        good = rows - len(bad)
        checks = {
            # A row whose answer was lost is retried and answered as a replay: present
            # once, counted as already present.
            "created + already present == good rows": _check(
                (result["importer"].get("created") or 0)
                + (result["importer"].get("already_present") or 0),
                good,
            ),
            "rejected == broken rows": _check(result["importer"].get("rejected"), len(bad)),
            "report names each broken row's field": _check(misreported_rows(report_path, bad), []),
        }
        stored = await _stored_refs(mongodb_uri, prefix)
        checks["good rows stored"] = _check(len(stored), good)
        checks["stored more than once"] = _check(len(stored) - len(set(stored)), 0)
        if rerun:
            again = await _import_once(
                source,
                intake_url,
                api_key,
                work_dir / "import-errors-rerun.csv",
                concurrency,
                sampler,
                time_limit,
            )
            result["rerun"] = again
            checks["rerun created"] = _check(again["importer"].get("created"), 0)
            checks["rerun already present"] = _check(again["importer"].get("already_present"), good)
            stored = await _stored_refs(mongodb_uri, prefix)
            checks["stored after the rerun"] = _check(len(stored), good)
        result["checks"] = checks
        result["checks_passed"] = all(c["ok"] for c in checks.values())
        return result
    finally:
        source.unlink(missing_ok=True)  # generated workers: nothing to keep


def _check(actual: Any, expected: Any) -> dict[str, Any]:
    return {"actual": actual, "expected": expected, "ok": actual == expected}


def misreported_rows(report_path: Path, bad: dict[int, str]) -> list[int]:
    """Rows whose report lines are missing, misnamed, or which were not broken."""
    named: dict[int, set[str]] = {}
    if report_path.exists():
        with report_path.open(newline="", encoding="utf-8") as report:
            for line in csv.DictReader(report):
                named.setdefault(int(line["row"]), set()).add(line["field"])
    wrong = [row for row, field in bad.items() if field not in named.get(row, set())]
    return sorted(wrong + [row for row in named if row not in bad])


async def _stored_refs(mongodb_uri: str, prefix: str) -> list[str]:
    """Every stored case's external_ref from this run, read from intake's store (one scan:
    the API's pages would each scan the collection again)."""
    client = make_mongo_client(mongodb_uri, app_name="lintas-bench")
    try:
        cursor = client[IntakeSettings.model_fields["database"].default]["cases"].find(
            {"external_ref": {"$regex": f"^{prefix}-"}}, {"external_ref": 1, "_id": 0}
        )
        return [doc["external_ref"] async for doc in cursor]
    finally:
        await client.close()


async def _import_once(
    source: Path,
    intake_url: str,
    api_key: str,
    report_path: Path,
    concurrency: int,
    sampler: Sampler,
    time_limit: float,
) -> dict[str, Any]:
    """One `lintas import` run as its own process, its peak RSS sampled from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINTAS_")}
    env["LINTAS_API_KEY"] = api_key
    with (report_path.parent / "import-progress.log").open("ab") as progress:
        window = sampler.open()
        began = time.monotonic()
        # The importer's CPU: what this process's reaped children used, before and after.
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        process = await spawn(
            sys.executable,
            "-m",
            "lintas_tools.cli",
            "import",
            str(source),
            "--url",
            intake_url,
            "--report",
            str(report_path),
            "--concurrency",
            str(concurrency),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=progress,
        )
        peak = 0
        stdout_task = asyncio.create_task(process.stdout.read())  # type: ignore[union-attr]
        timed_out = False
        try:
            while process.returncode is None:
                peak = max(peak, rss_bytes(process.pid))
                if time.monotonic() - began > time_limit:
                    timed_out = True
                    break
                try:
                    await asyncio.wait_for(process.wait(), timeout=0.25)
                except TimeoutError:
                    pass
        finally:
            await reap(process)  # past the limit, or the run was interrupted
        stdout = await stdout_task
        elapsed = time.monotonic() - began
        sampler.close(window)
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
        importer_cpu = (reaped.ru_utime + reaped.ru_stime) - (children.ru_utime + children.ru_stime)
    summary: dict[str, Any] = {}
    text = stdout.decode(errors="replace")
    start = text.find("{")
    if start >= 0:
        try:
            summary = json.loads(text[start:])
        except json.JSONDecodeError:
            summary = {}
    summary.pop("report", None)
    return {
        "exit_code": process.returncode,
        "timed_out": timed_out,
        "seconds": round(elapsed, 1),
        "importer": summary,
        "importer_peak_rss_mib": round(peak / MIB, 1),
        "services_peak_rss_mib": mib(window),
        "services_cpu_seconds": window.cpu,
        "importer_cpu_seconds": round(importer_cpu, 2),
    }
