"""Bulk import of cases through the public API (`lintas import FILE`).

Reads CSV (one claim per row, header below) or JSON Lines (one case document per line),
submits each row with its own Idempotency-Key, a few at a time, retrying what the
network or the server lost, and shows progress with rate and ETA. Every refused row is
written to a report (row, field, message); re-running the same file is safe, because a
row already imported is recognised by its external_ref.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import resource
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx
from lintas_shared.case_rows import csv_row_to_case


@dataclass
class ImportReport:
    """What happened to every row."""

    created: int = 0
    already_present: int = 0
    rejected: int = 0
    errors: list[tuple[int, str, str]] = field(default_factory=list)  # (row, field, message)

    @property
    def done(self) -> int:
        """Rows finished, whatever their fate."""
        return self.created + self.already_present + self.rejected


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(row number, case document) for each row; a string where the row cannot be read."""
    with path.open(encoding="utf-8-sig", newline="") as source:
        if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            for number, line in enumerate(source, 1):
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield number, f"not JSON: {exc.msg}"
                    continue
                yield number, doc if isinstance(doc, dict) else "not a JSON object"
        else:
            # Row 1 is the header, so data rows are numbered as a spreadsheet shows them.
            for number, row in enumerate(csv.DictReader(source), 2):
                yield number, csv_row_to_case(row)


class Progress:
    """A one-line progress bar on stderr with rate and ETA."""

    def __init__(self, total: int, out: TextIO = sys.stderr) -> None:
        self.total = total
        self.out = out
        self.started = time.monotonic()
        self._last = 0.0

    def show(self, report: ImportReport, final: bool = False) -> None:
        """Redraw (at most ten times a second)."""
        now = time.monotonic()
        if not final and now - self._last < 0.1:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-6)
        rate = report.done / elapsed
        eta = (self.total - report.done) / rate if rate > 0 else 0.0
        width = 30
        filled = int(width * report.done / max(self.total, 1))
        self.out.write(
            f"\r[{'#' * filled}{' ' * (width - filled)}] {report.done}/{self.total}"
            f" rows  {rate:6.1f} rows/s  ETA {eta:5.0f}s  errors {report.rejected}"
        )
        if final:
            self.out.write("\n")
        self.out.flush()


def _idempotency_key(doc: dict[str, Any]) -> str:
    body = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return "import-" + hashlib.sha256(body.encode()).hexdigest()[:40]


async def _submit(
    client: httpx.AsyncClient,
    number: int,
    doc: dict[str, Any],
    report: ImportReport,
    attempts: int = 5,
) -> None:
    headers = {"Idempotency-Key": _idempotency_key(doc)}
    for attempt in range(1, attempts + 1):
        try:
            response = await client.post("/v1/cases", json=doc, headers=headers)
        except httpx.TransportError as exc:
            if attempt == attempts:
                report.rejected += 1
                report.errors.append((number, "", f"network: {type(exc).__name__}"))
                return
            await asyncio.sleep(0.2 * 2**attempt)
            continue
        if response.status_code == 201:
            if response.headers.get("idempotent-replayed") == "true":
                report.already_present += 1  # the same row, imported by an earlier run
            else:
                report.created += 1
            return
        if response.status_code == 409 and "existing_case_id" in response.text:
            report.already_present += 1  # imported by an earlier run
            return
        if response.status_code in (429, 500, 502, 503, 504) and attempt < attempts:
            await asyncio.sleep(float(response.headers.get("retry-after", 0.2 * 2**attempt)))
            continue
        report.rejected += 1
        try:
            body = response.json()
        except ValueError:
            body = {}
        problems = body.get("errors") or [
            {"field": "", "message": body.get("detail") or f"HTTP {response.status_code}"}
        ]
        for problem in problems:
            report.errors.append((number, problem.get("field", ""), problem.get("message", "")))
        return


async def import_file(
    path: Path,
    *,
    url: str,
    api_key: str,
    report_path: Path,
    concurrency: int = 8,
    out: TextIO = sys.stderr,
) -> ImportReport:
    """Submit every row of `path`; returns the report, also written to `report_path`."""
    total = sum(1 for _ in read_rows(path))
    report = ImportReport()
    progress = Progress(total, out)
    queue: asyncio.Queue[tuple[int, dict[str, Any] | str] | None] = asyncio.Queue(
        maxsize=concurrency * 4
    )

    async def worker(client: httpx.AsyncClient) -> None:
        while (item := await queue.get()) is not None:
            number, doc = item
            if isinstance(doc, str):
                report.rejected += 1
                report.errors.append((number, "", doc))
            else:
                await _submit(client, number, doc, report)
            progress.show(report)

    async with httpx.AsyncClient(
        base_url=url, headers={"X-API-Key": api_key}, timeout=30.0
    ) as client:
        workers = [asyncio.create_task(worker(client)) for _ in range(concurrency)]
        for item in read_rows(path):
            await queue.put(item)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    progress.show(report, final=True)
    with report_path.open("w", newline="", encoding="utf-8") as out_file:
        writer = csv.writer(out_file)
        writer.writerow(["row", "field", "message"])
        writer.writerows(sorted(report.errors))
    return report


def run_import(
    path: Path, *, url: str, api_key: str, report_path: Path, concurrency: int
) -> ImportReport:
    """Run an import and print its summary with rate and peak memory."""
    started = time.monotonic()
    report = asyncio.run(
        import_file(
            path, url=url, api_key=api_key, report_path=report_path, concurrency=concurrency
        )
    )
    elapsed = time.monotonic() - started
    # Peak RSS from the kernel (KiB on Linux). tracemalloc would also give the Python
    # heap, but it taxes every allocation and slowed the importer itself.
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "rows": report.done,
                "created": report.created,
                "already_present": report.already_present,
                "rejected": report.rejected,
                "seconds": round(elapsed, 1),
                "rows_per_second": round(report.done / max(elapsed, 1e-6), 1),
                "peak_rss_mib": round(peak_kib / 1024, 1),
                "report": str(report_path),
            },
            indent=2,
        ),
        flush=True,
    )
    return report
