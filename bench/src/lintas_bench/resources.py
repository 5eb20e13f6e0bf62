"""Resident memory and CPU time of the processes under test, sampled with psutil."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import psutil
from lintas_shared.background import BackgroundTask

MIB = 1024 * 1024


# The processes measured start no children (uvicorn without workers, the JVM, the Go
# binary), so each is read alone: scanning /proc for children every sample would cost
# more CPU than the sampling itself on a busy two-core machine.
_PROCESSES: dict[int, psutil.Process] = {}


def _process(pid: int) -> psutil.Process | None:
    process = _PROCESSES.get(pid)
    if process is None:
        try:
            process = _PROCESSES[pid] = psutil.Process(pid)
        except psutil.Error:
            return None
    return process


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (0 when it is gone)."""
    process = _process(pid)
    if process is None:
        return 0
    try:
        return int(process.memory_info().rss)
    except psutil.Error:
        return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process so far (0 when it is gone)."""
    process = _process(pid)
    if process is None:
        return 0.0
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


@dataclass
class Window:
    """CPU used and the peak memory seen per process between `open` and `close`."""

    cpu_start: dict[str, float]
    peak_rss: dict[str, int]
    opened_at: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)

    def net_cpu_ms_per_case(
        self, cases: int, idle_rate: Mapping[str, float]
    ) -> dict[str, float | None]:
        """CPU milliseconds per case, less what each process burns when idle (its
        background loops) over the same time: at low rates that would dominate."""
        if cases <= 0:
            return {name: None for name in self.cpu}
        return {
            name: round(
                1000.0 * max(0.0, used - idle_rate.get(name, 0.0) * self.seconds) / cases, 2
            )
            for name, used in self.cpu.items()
        }


@dataclass
class Sampler:
    """Samples RSS every `interval` seconds; windows collect peaks and CPU deltas."""

    pids: Mapping[str, int]
    interval: float = 0.25
    _windows: list[Window] = field(default_factory=list)
    _loop: BackgroundTask | None = None

    def snapshot_rss(self) -> dict[str, float]:
        """RSS now, in MiB, per process."""
        return {name: round(rss_bytes(pid) / MIB, 1) for name, pid in self.pids.items()}

    def open(self) -> Window:
        """Start a window now."""
        window = Window(
            cpu_start={name: cpu_seconds(pid) for name, pid in self.pids.items()},
            peak_rss={name: rss_bytes(pid) for name, pid in self.pids.items()},
        )
        self._windows.append(window)
        return window

    def close(self, window: Window) -> Window:
        """End a window: fills in its CPU seconds per process."""
        self._sample()
        window.seconds = time.monotonic() - window.opened_at
        window.cpu = {
            name: round(cpu_seconds(pid) - window.cpu_start[name], 3)
            for name, pid in self.pids.items()
        }
        with contextlib.suppress(ValueError):
            self._windows.remove(window)
        return window

    @contextlib.contextmanager
    def window(self) -> Iterator[Window]:
        """A window for the duration of a block."""
        window = self.open()
        try:
            yield window
        finally:
            self.close(window)

    def _sample(self) -> None:
        if not self._windows:
            return
        for name, pid in self.pids.items():
            rss = rss_bytes(pid)
            for window in self._windows:
                if rss > window.peak_rss.get(name, 0):
                    window.peak_rss[name] = rss

    async def _run(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        """Sample in the background of the running event loop."""
        if self._loop is None:
            self._loop = BackgroundTask("bench-sampler", self._run)
        self._loop.start()

    async def stop(self) -> None:
        """Stop sampling."""
        if self._loop is not None:
            await self._loop.stop()


def mib(window: Window) -> dict[str, float]:
    """A window's peaks in MiB."""
    return {name: round(value / MIB, 1) for name, value in window.peak_rss.items()}


def idle_rate(window: Window) -> dict[str, float]:
    """CPU seconds per second of each process over an idle window."""
    seconds = max(window.seconds, 1e-6)
    return {name: round(used / seconds, 4) for name, used in window.cpu.items()}
