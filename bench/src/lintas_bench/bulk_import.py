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
import itertools
import json
import os
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lintas_intake.settings import IntakeSettings
from lintas_shared.mongo import make_mongo_client
from lintas_tools.import_samples import write_import_csv

from lintas_bench.children import reap, spawn
from lintas_bench.http_client import HttpClientError, LeanHttpClient
from lintas_bench.load import case_document
from lintas_bench.resources import MIB, Sampler, mib, rss_bytes
from lintas_bench.stats import summarise

#: One live case submitted every this many seconds while the import runs: what a
#: caseworker's `POST /v1/cases` meets during an import.
LIVE_INTERVAL = 0.5


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
            source,
            intake_url,
            api_key,
            report_path,
            concurrency,
            sampler,
            time_limit,
            live_run=run,
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
    live_run: str | None = None,
) -> dict[str, Any]:
    """One `lintas import` run as its own process, its peak RSS sampled from outside;
    with `live_run`, live cases submitted one by one meanwhile (`live`, their answers'
    latency; `live_case_ids`)."""
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
        watched = {"importer": process.pid, "intake": sampler.pids.get("intake")}
        memory = MemoryOverTime({name: pid for name, pid in watched.items() if pid})
        stdout_task = asyncio.create_task(process.stdout.read())  # type: ignore[union-attr]
        live = LiveProbe(intake_url, api_key, live_run) if live_run else None
        live_task = asyncio.create_task(live.run()) if live else None
        timed_out = False
        try:
            while process.returncode is None:
                memory.sample(time.monotonic() - began)
                if time.monotonic() - began > time_limit:
                    timed_out = True
                    break
                try:
                    await asyncio.wait_for(process.wait(), timeout=0.25)
                except TimeoutError:
                    pass
        finally:
            await reap(process)  # past the limit, or the run was interrupted
            if live_task is not None:
                live_task.cancel()
                await asyncio.gather(live_task, return_exceptions=True)
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
    extra: dict[str, Any] = {}
    if live is not None:
        extra = {"live": live.summary(), "live_case_ids": live.case_ids}
    return extra | {
        "exit_code": process.returncode,
        "timed_out": timed_out,
        "seconds": round(elapsed, 1),
        "importer": summary,
        "importer_peak_rss_mib": memory.peak("importer"),
        "rss_mib_by_quarter": memory.quarters(),
        "services_peak_rss_mib": mib(window),
        "services_cpu_seconds": window.cpu,
        "importer_cpu_seconds": round(importer_cpu, 2),
    }


class MemoryOverTime:
    """RSS of some processes through the import, a sample every `every` seconds: whether
    their memory stays flat, not only its peak. (At a second apart, the first quarter of
    a 3-second import read the importer as it was spawned: 0.2 MiB.)"""

    def __init__(
        self, pids: Mapping[str, int], every: float = 0.25, rss: Callable[[int], int] = rss_bytes
    ) -> None:
        self._pids = dict(pids)
        self._every = every
        self._rss = rss
        self._series: list[tuple[float, dict[str, int]]] = []

    def sample(self, elapsed: float) -> None:
        """Note each process's RSS, at most once in `every` seconds."""
        if self._series and elapsed - self._series[-1][0] < self._every:
            return
        self._series.append((elapsed, {name: self._rss(pid) for name, pid in self._pids.items()}))

    def peak(self, name: str) -> float:
        """The highest RSS sampled of one process, in MiB."""
        return round(max((rss.get(name, 0) for _, rss in self._series), default=0) / MIB, 1)

    def quarters(self) -> dict[str, list[float]]:
        """Per process, its RSS in MiB at a quarter, half, three quarters and the end of
        the time sampled (the last sample at or before each point)."""
        if not self._series:
            return {}
        end = self._series[-1][0]
        points = [end * n / 4 for n in (1, 2, 3, 4)]
        picked = [max((s for s in self._series if s[0] <= p), key=lambda s: s[0]) for p in points]
        return {
            name: [round(rss.get(name, 0) / MIB, 1) for _, rss in picked] for name in self._pids
        }


class LiveProbe:
    """Submits one case every `LIVE_INTERVAL` seconds (`POST /v1/cases`, its own key),
    as a caseworker would while an import runs, and keeps each answer's latency."""

    def __init__(self, intake_url: str, api_key: str, run: str) -> None:
        self._url = intake_url
        self._api_key = api_key
        self._run = f"{run}-LIVE"
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.case_ids: list[str] = []

    async def run(self) -> None:
        """Until cancelled."""
        async with LeanHttpClient(
            self._url,
            headers={"X-API-Key": self._api_key, "Content-Type": "application/json"},
            max_connections=4,
            timeout=60.0,
        ) as client:
            for n in itertools.count():
                body = json.dumps(case_document(self._run, n)).encode()
                began = time.monotonic()
                try:
                    answer = await client.post(
                        "/v1/cases", body, {"Idempotency-Key": f"live-{self._run}-{n}"}
                    )
                except (HttpClientError, OSError) as exc:
                    self.errors[type(exc).__name__] += 1
                else:
                    if answer.status == 201:
                        self.latencies.append(time.monotonic() - began)
                        self.case_ids.append(str(json.loads(answer.body)["id"]))
                    else:
                        self.errors[f"HTTP {answer.status}"] += 1
                await asyncio.sleep(max(0.0, LIVE_INTERVAL - (time.monotonic() - began)))

    def summary(self) -> dict[str, Any]:
        """How many were accepted, their latencies, the errors."""
        return {"interval_s": LIVE_INTERVAL, "errors": dict(self.errors)} | asdict(
            summarise(self.latencies)
        )
