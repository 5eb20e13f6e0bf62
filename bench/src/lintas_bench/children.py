"""Child processes of the benchmark (py-spy, the importer, baseline scripts, Java tools):
each is waited for with a time limit and killed, by its own handle, if it outlives it or
the run is interrupted, so none is left behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

#: Every child started through `spawn` and not yet collected.
_RUNNING: set[int] = set()


async def spawn(program: str, *args: str, **kwargs: Any) -> asyncio.subprocess.Process:
    """Start a child process, remembered until it is collected (see `kill_leftovers`)."""
    process = await asyncio.create_subprocess_exec(program, *args, **kwargs)
    _RUNNING.add(process.pid)
    return process


def kill_leftovers() -> list[int]:
    """SIGKILL every child still running; returns their pids. For the very end of a run:
    an interrupt (Ctrl-C, SIGTERM) can stop the event loop before a child is reaped, and
    a forgotten importer would go on feeding the next run's services on the same port."""
    killed = []
    for pid in sorted(_RUNNING):
        if not _is_my_child(pid):
            continue  # collected already (its number may belong to another process now)
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            os.waitpid(pid, 0)
    _RUNNING.clear()
    return killed


def _is_my_child(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ")".
            parent = int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return False
    return parent == os.getpid()


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
    _RUNNING.discard(process.pid)
