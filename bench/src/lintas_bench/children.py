"""Child processes of the benchmark (py-spy, the importer, baseline scripts, Java tools):
each is waited for with a time limit and killed, by its own handle, if it outlives it or
the run is interrupted, so none is left behind."""

from __future__ import annotations

import asyncio
import contextlib


async def finish(process: asyncio.subprocess.Process, limit: float) -> tuple[bytes, bytes] | None:
    """Its (stdout, stderr) once it exits, or None if it ran past `limit` seconds."""
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=limit)
        return stdout or b"", stderr or b""
    except TimeoutError:
        return None
    finally:
        await reap(process)


async def reap(process: asyncio.subprocess.Process) -> None:
    """Kill the process if it still runs, and collect it."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
