"""Background server processes tracked by pid files, plus port and log helpers.

A process is only ever found through the pid file this module wrote when it started it,
and is only signalled while ``/proc/<pid>/cmdline`` still shows the command line we
started (so a recycled pid is never killed). Nothing here looks processes up by name.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "ManagedProcess",
    "PortInUseError",
    "ensure_ports_free",
    "file_lock",
    "port_is_free",
    "wait_for_log_line",
    "wait_for_port",
]

# Popen objects of children started by this Python process, kept so they can be reaped
# (no zombies, no "subprocess is still running" ResourceWarning when one is dropped).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class PortInUseError(RuntimeError):
    """A port we need is taken by a process this package did not start."""


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_stat(pid: int) -> tuple[str, int] | None:
    """Return (state, process group) of ``pid`` from /proc, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError as exc:
        if exc.errno in (errno.ESRCH, errno.ENOENT):
            return None
        raise
    # "pid (comm) state ppid pgrp ...": comm may itself contain spaces and parentheses.
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[2])


def _reap(pid: int) -> None:
    """Collect the exit status of ``pid`` if it is our own child, so it is no zombie."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _CHILDREN[pid]
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


#: How long stop() waits for PID 1 to collect a stopped server that is not our child.
REAP_WAIT_SECONDS = 15.0


def _listed(pid: int, group: bool) -> bool:
    """Whether ``pid`` (or, for a group, any member of it) is still in the process table,
    zombies included."""
    _reap(pid)
    if not group:
        return _read_stat(pid) is not None
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _read_stat(int(entry.name))
            if stat is not None and stat[1] == pid:
                return True
    return False


def _pid_alive(pid: int) -> bool:
    _reap(pid)
    stat = _read_stat(pid)
    return stat is not None and stat[0] != "Z"


def _group_alive(pgid: int) -> bool:
    """Tell whether any non-zombie process is left in process group ``pgid``."""
    _reap(pgid)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _read_stat(int(entry.name))
        if stat is not None and stat[1] == pgid and stat[0] != "Z":
            return True
    return False


class ManagedProcess:
    """A background server process we started, tracked by a pid file (never found by name).

    Files: ``state_dir/run/<name>.pid`` (the pid alone, on one line),
    ``state_dir/run/<name>.json`` (the argv we started, to recognise the process later),
    ``state_dir/logs/<name>.log`` (stdout and stderr, appended across runs).
    """

    def __init__(self, name: str, state_dir: Path) -> None:
        """Describe the process ``name`` whose files live under ``state_dir``."""
        self.name = name
        self.state_dir = Path(state_dir)
        self.pid_file = self.state_dir / "run" / f"{name}.pid"
        self.meta_file = self.state_dir / "run" / f"{name}.json"
        self.log_file = self.state_dir / "logs" / f"{name}.log"
        #: True once this handle's start() launched the process (vs. found it running).
        self.started_here = False

    def __repr__(self) -> str:
        """Show the name and state dir."""
        return f"ManagedProcess(name={self.name!r}, state_dir={str(self.state_dir)!r})"

    @property
    def pid(self) -> int | None:
        """The pid recorded in the pid file, or None if there is none (or it is garbage)."""
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def recorded_argv(self) -> list[str] | None:
        """Return the argv recorded when the process was started, or None."""
        try:
            meta = json.loads(self.meta_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        argv = meta.get("argv") if isinstance(meta, dict) else None
        if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
            return argv
        return None

    def start(
        self,
        argv: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> int:
        """Start ``argv`` in a new session, detached from the caller, and return its pid.

        ``env`` adds to (or overrides) the current environment. stdout and stderr are
        appended to the log file. Raises RuntimeError if this process is already running.
        """
        if not argv:
            raise ValueError("argv must not be empty")
        if self.is_running():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        stamp = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        with self.log_file.open("ab") as log:
            log.write(f"\n=== lintas: starting {self.name} at {stamp}: {argv!r}\n".encode())
            log.flush()
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=full_env,
                start_new_session=True,  # own process group; outlives the caller
                close_fds=True,
            )
        _CHILDREN[child.pid] = child
        self.started_here = True
        meta = {"pid": child.pid, "argv": argv, "started_at": stamp, "log": str(self.log_file)}
        _write_atomic(self.meta_file, json.dumps(meta, indent=2) + "\n")
        _write_atomic(self.pid_file, f"{child.pid}\n")
        # Popen returns once the child's close-on-exec fds are closed, which is slightly
        # before the kernel publishes the new argv in /proc/<pid>/cmdline (it reads empty
        # meanwhile); wait for it so that other processes see is_running() right away.
        _wait_until(
            lambda: child.poll() is not None or self._cmdline_matches(child.pid, argv),
            5.0,
            0.005,
        )
        return child.pid

    @staticmethod
    def _cmdline_matches(pid: int, argv: list[str]) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return cmdline.split(b"\0")[:-1] == [os.fsencode(a) for a in argv]

    def _is_ours(self, pid: int) -> bool:
        """Tell whether ``pid`` is alive and still runs the command line we recorded."""
        child = _CHILDREN.get(pid)
        if child is not None and child.poll() is None:
            # Our own child, not yet reaped: its pid cannot have been reused.
            return _pid_alive(pid)
        argv = self.recorded_argv()
        if argv is None or not _pid_alive(pid):
            return False
        return self._cmdline_matches(pid, argv)

    def is_running(self) -> bool:
        """Tell whether the pid file names a live process running the argv we started."""
        pid = self.pid
        return pid is not None and self._is_ours(pid)

    def stop(self, timeout: float = 20.0) -> bool:
        """Stop the process: SIGTERM to it and its group, SIGKILL after ``timeout`` seconds.

        Removes the pid file in any case. Returns True if the process was running.
        A pid file naming a dead or foreign process is just removed (nothing is signalled).
        """
        pid = self.pid
        if pid is None or not self._is_ours(pid):
            self._forget()
            return False
        stat = _read_stat(pid)
        # We started it with start_new_session=True, so normally pgid == pid.
        group = stat is not None and stat[1] == pid

        def send(sig: signal.Signals) -> None:
            with contextlib.suppress(ProcessLookupError):
                if group:
                    os.killpg(pid, sig)
                else:
                    os.kill(pid, sig)

        def alive() -> bool:
            return _group_alive(pid) if group else _pid_alive(pid)

        send(signal.SIGTERM)
        if not _wait_until(lambda: not alive(), timeout):
            send(signal.SIGKILL)
            _wait_until(lambda: not alive(), 10.0)
        _reap(pid)
        # A server started by an earlier `lintas up` is no child of ours: once it exits,
        # only PID 1 can collect it, and until then it is listed as <defunct>. Wait for
        # that (about 2 s on these machines) so that nothing we started is left listed.
        _wait_until(lambda: not _listed(pid, group), REAP_WAIT_SECONDS)
        self._forget()
        return True

    def _forget(self) -> None:
        for path in (self.pid_file, self.meta_file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def log_size(self) -> int:
        """Return the size of the log file in bytes (0 if it does not exist)."""
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def log_tail(self, lines: int = 40) -> str:
        """Return the last ``lines`` lines of the log file ("" if there is none)."""
        try:
            with self.log_file.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                chunk = 256 * 1024
                handle.seek(max(0, size - chunk))
                data = handle.read()
        except FileNotFoundError:
            return ""
        text = data.decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:]) if lines > 0 else ""

    def log_since(self, offset: int) -> str:
        """Log text written after byte ``offset`` (decoded leniently)."""
        try:
            with self.log_file.open("rb") as handle:
                handle.seek(offset)
                return handle.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _died_message(proc: ManagedProcess, what: str) -> str:
    return f"{proc.name} {what}; last lines of {proc.log_file}:\n{proc.log_tail()}"


def wait_for_port(host: str, port: int, timeout: float, proc: ManagedProcess | None = None) -> None:
    """Wait until a TCP connection to ``host:port`` succeeds.

    Raises RuntimeError (with the log tail of ``proc``, if given) when ``proc`` dies
    first or ``timeout`` seconds pass.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and not proc.is_running():
            raise RuntimeError(_died_message(proc, f"exited before it listened on {host}:{port}"))
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            pass
        if time.monotonic() >= deadline:
            if proc is not None:
                raise RuntimeError(
                    _died_message(proc, f"did not listen on {host}:{port} within {timeout:g}s")
                )
            raise RuntimeError(f"nothing listened on {host}:{port} within {timeout:g}s")
        time.sleep(0.2)


def wait_for_log_line(proc: ManagedProcess, needle: str, timeout: float, offset: int = 0) -> None:
    """Wait until ``needle`` appears in ``proc``'s log after byte ``offset``.

    Raises RuntimeError with the log tail if the process dies or ``timeout`` passes.
    """
    deadline = time.monotonic() + timeout
    while True:
        if needle in proc.log_since(offset):
            return
        if not proc.is_running():
            raise RuntimeError(_died_message(proc, f"exited before logging {needle!r}"))
        if time.monotonic() >= deadline:
            raise RuntimeError(_died_message(proc, f"did not log {needle!r} within {timeout:g}s"))
        time.sleep(0.2)


def port_is_free(host: str, port: int) -> bool:
    """Tell whether a TCP server could bind ``host:port`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the servers themselves: a port in TIME_WAIT counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def ensure_ports_free(ports: dict[str, int], host: str = "127.0.0.1", hint: str = "") -> None:
    """Raise PortInUseError naming every port in ``ports`` (label -> port) that is taken."""
    taken = [
        f"{label} {host}:{port}" for label, port in ports.items() if not port_is_free(host, port)
    ]
    if taken:
        raise PortInUseError(
            f"{' and '.join(taken)} already in use by a process that this state dir did not "
            f"start; stop it or choose another port{hint}"
        )
