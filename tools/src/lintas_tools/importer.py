"""Bulk import of cases through the public API (`lintas import FILE`).

Reads CSV (one claim per row, header below) or JSON Lines (one case document per line),
submits the rows in batches (`POST /v1/cases/batch`, up to `batch_size` rows and
BATCH_BYTES of JSON each, a few batches at a time), each row with its own idempotency
key, retrying what the network or the server lost, and shows progress with rate and ETA.
Every refused row is written to a report (row, field, message); re-running the same file
is safe, because a row already imported is recognised by its key or its external_ref.
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


def _is_json_lines(path: Path) -> bool:
    return path.suffix.lower() in (".jsonl", ".ndjson", ".json")


def count_rows(path: Path) -> int:
    """How many rows `read_rows` yields, without making documents of them (for the
    progress bar: converting every row twice was a fifth of the importer's CPU)."""
    with path.open(encoding="utf-8-sig", newline="") as source:
        if _is_json_lines(path):
            return sum(1 for line in source if line.strip())
        return sum(1 for _ in csv.DictReader(source))


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(row number, case document) for each row; a string where the row cannot be read."""
    with path.open(encoding="utf-8-sig", newline="") as source:
        if _is_json_lines(path):
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


@dataclass(frozen=True)
class _Row:
    """A readable row, encoded once: its JSON (sorted keys, ASCII) is both what is sent
    and what its idempotency key is the hash of."""

    number: int
    json: str

    @classmethod
    def of(cls, number: int, doc: dict[str, Any]) -> _Row:
        """Raises ValueError for a value JSON cannot hold (NaN, Infinity: Python's JSON
        reader takes them)."""
        return cls(number, json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False))

    @property
    def idempotency_key(self) -> str:
        """The same row gets the same key in every run (re-imports create nothing)."""
        return "import-" + hashlib.sha256(self.json.encode()).hexdigest()[:40]


def _batch_body(rows: list[_Row]) -> bytes:
    """`{"cases": [{"idempotency_key": ..., "case": ...}, ...]}` from the rows' own JSON
    (the key is hexadecimal: nothing in it to escape)."""
    items = ",".join(
        f'{{"idempotency_key":"{row.idempotency_key}","case":{row.json}}}' for row in rows
    )
    return f'{{"cases":[{items}]}}'.encode()


#: Most JSON bytes in one batch: inside intake's default request body limit (256,000).
BATCH_BYTES = 200_000


def _fail(report: ImportReport, rows: list[_Row], why: str) -> None:
    report.rejected += len(rows)
    report.errors.extend((row.number, "", why) for row in rows)


def _record(report: ImportReport, number: int, result: dict[str, Any]) -> None:
    outcome = result.get("outcome")
    if outcome == "created":
        report.created += 1
    elif outcome == "already_present" or (outcome == "conflict" and result.get("existing_case_id")):
        report.already_present += 1  # the same row (or its external_ref) from an earlier run
    else:
        report.rejected += 1
        problems = result.get("errors") or [{"field": "", "message": result.get("detail", "")}]
        report.errors.extend((number, p.get("field", ""), p.get("message", "")) for p in problems)


async def _submit_batch(
    client: httpx.AsyncClient,
    rows: list[_Row],
    report: ImportReport,
    attempts: int = 5,
) -> None:
    """Send one batch; a batch the server finds too large is sent again in two halves."""
    body = _batch_body(rows)
    for attempt in range(1, attempts + 1):
        try:
            response = await client.post(
                "/v1/cases/batch", content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.TransportError as exc:
            if attempt == attempts:
                _fail(report, rows, f"network: {type(exc).__name__}")
                return
            await asyncio.sleep(0.2 * 2**attempt)
            continue
        if response.status_code == 413 and len(rows) > 1:
            half = len(rows) // 2
            await _submit_batch(client, rows[:half], report, attempts)
            await _submit_batch(client, rows[half:], report, attempts)
            return
        if response.status_code in (429, 500, 502, 503, 504) and attempt < attempts:
            await asyncio.sleep(float(response.headers.get("retry-after", 0.2 * 2**attempt)))
            continue
        if response.status_code != 200:
            try:
                detail = response.json().get("detail") or f"HTTP {response.status_code}"
            except ValueError:
                detail = f"HTTP {response.status_code}"
            _fail(report, rows, str(detail))
            return
        for row, result in zip(rows, response.json()["results"], strict=True):
            _record(report, row.number, result)
        return


def _batches(
    items: Iterator[tuple[int, dict[str, Any] | str]], report: ImportReport, size: int
) -> Iterator[list[_Row]]:
    """Readable rows in batches of at most `size` rows and BATCH_BYTES; unreadable rows
    go straight to the report."""
    batch: list[_Row] = []
    weight = 0
    for number, doc in items:
        if isinstance(doc, str):
            report.rejected += 1
            report.errors.append((number, "", doc))
            continue
        try:
            row = _Row.of(number, doc)
        except ValueError:
            report.rejected += 1
            report.errors.append((number, "", "not JSON: NaN and Infinity are not JSON numbers"))
            continue
        cost = len(row.json) + 100
        if batch and (len(batch) >= size or weight + cost > BATCH_BYTES):
            yield batch
            batch, weight = [], 0
        batch.append(row)
        weight += cost
    if batch:
        yield batch


async def import_file(
    path: Path,
    *,
    url: str,
    api_key: str,
    report_path: Path,
    concurrency: int = 8,
    batch_size: int = 100,
    out: TextIO = sys.stderr,
) -> ImportReport:
    """Submit every row of `path` in batches, `concurrency` batches at a time; returns
    the report, also written to `report_path`."""
    total = count_rows(path)
    report = ImportReport()
    progress = Progress(total, out)
    queue: asyncio.Queue[list[_Row] | None] = asyncio.Queue(maxsize=concurrency * 2)

    async def worker(client: httpx.AsyncClient) -> None:
        while (batch := await queue.get()) is not None:
            await _submit_batch(client, batch, report)
            progress.show(report)

    async with httpx.AsyncClient(
        base_url=url, headers={"X-API-Key": api_key}, timeout=120.0
    ) as client:
        workers = [asyncio.create_task(worker(client)) for _ in range(concurrency)]
        for batch in _batches(read_rows(path), report, batch_size):
            await queue.put(batch)
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
