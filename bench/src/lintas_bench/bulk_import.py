"""Bulk import: N generated rows through `lintas import`, its rate and its memory.

The importer runs as its own process, exactly as an operator runs it (`lintas import
FILE`), with the API key in `LINTAS_API_KEY` (never on the command line). Its own
summary (rows/s, peak Python heap by tracemalloc) is read from its output, and its peak
resident memory is sampled from outside with psutil, as are the services'.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from lintas_tools.importer import CSV_COLUMNS, EXAMPLE_ROW

from lintas_bench.children import reap
from lintas_bench.resources import MIB, Sampler, mib, rss_bytes


def write_rows(path: Path, rows: int, run: str) -> None:
    """A CSV of `rows` valid cases with generated workers and phones (never printed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for n in range(rows):
            writer.writerow(
                EXAMPLE_ROW
                | {
                    "external_ref": f"IMPORT-{run}-{n:07d}",
                    "worker_full_name": f"Pekerja Impor {n:07d}",
                    "worker_phone": f"+62813{n % 10**8:08d}",
                }
            )


async def run_import(
    *,
    intake_url: str,
    api_key: str,
    rows: int,
    concurrency: int,
    work_dir: Path,
    run: str,
    sampler: Sampler,
    time_limit: float,
) -> dict[str, Any]:
    """Import `rows` rows; returns the importer's summary plus measured memory."""
    source = work_dir / f"import-{rows}.csv"
    write_rows(source, rows, run)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINTAS_")}
    env["LINTAS_API_KEY"] = api_key
    with (work_dir / "import-progress.log").open("wb") as progress:
        window = sampler.open()
        began = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lintas_tools.cli",
            "import",
            str(source),
            "--url",
            intake_url,
            "--report",
            str(work_dir / "import-errors.csv"),
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
    source.unlink(missing_ok=True)  # generated workers: nothing to keep
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
        "rows": rows,
        "concurrency": concurrency,
        "exit_code": process.returncode,
        "timed_out": timed_out,
        "seconds": round(elapsed, 1),
        "importer": summary,
        "importer_peak_rss_mib": round(peak / MIB, 1),
        "services_peak_rss_mib": mib(window),
        "services_cpu_seconds": window.cpu,
    }
