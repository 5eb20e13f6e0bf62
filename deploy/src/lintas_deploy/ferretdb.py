"""FerretDB v1.24.2 (MongoDB wire protocol on SQLite), embedded in a tiny Go program.

``provision_ferretdb`` builds ``deploy/ferretdb`` (``go build``, CGO_ENABLED=0, modules
through the Go defaults) into the cache; ``start_ferretdb`` runs it on 127.0.0.1 with its
SQLite files under the state dir.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from lintas_deploy import deploy_file
from lintas_deploy.processes import (
    ManagedProcess,
    ensure_ports_free,
    file_lock,
    wait_for_port,
)

__all__ = [
    "FERRETDB_VERSION",
    "ferretdb_address",
    "ferretdb_process",
    "provision_ferretdb",
    "start_ferretdb",
]

FERRETDB_VERSION = "v1.24.2"

HOST = "127.0.0.1"

BINARY_NAME = "lintas-ferretdb"

_SOURCES = ("go.mod", "go.sum", "main.go")


def _go() -> str:
    found = shutil.which("go")
    if found:
        return found
    goroot = os.environ.get("GOROOT")
    for candidate in ([Path(goroot) / "bin" / "go"] if goroot else []) + [
        Path("/usr/local/go/bin/go")
    ]:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise RuntimeError("`go` not found on PATH; install Go first")


def _source_hash(src_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in _SOURCES:
        digest.update(name.encode() + b"\0" + (src_dir / name).read_bytes() + b"\0")
    return digest.hexdigest()


def provision_ferretdb(cache_dir: Path, progress: Callable[[str], None] = print) -> Path:
    """Build ``cache_dir/bin/lintas-ferretdb`` from ``deploy/ferretdb`` and return its path.

    Runs ``go build`` (CGO_ENABLED=0) only when the stamp (a hash of go.mod, go.sum and
    main.go) is missing or different, or the binary is gone.
    """
    src_dir = deploy_file("ferretdb", "main.go").parent
    bin_dir = Path(cache_dir).resolve() / "bin"
    binary = bin_dir / BINARY_NAME
    stamp_file = bin_dir / f"{BINARY_NAME}.stamp"
    wanted = _source_hash(src_dir)
    with file_lock(bin_dir / f".{BINARY_NAME}.lock"):
        if binary.is_file() and _read(stamp_file) == wanted:
            progress(f"ferretdb: binary up to date at {binary}")
            return binary
        go = _go()
        progress(
            f"ferretdb: building {BINARY_NAME} (FerretDB {FERRETDB_VERSION}) with go build, "
            "CGO_ENABLED=0 (about a minute on 2 cores when nothing is cached)..."
        )
        began = time.monotonic()
        tmp = bin_dir / f".{BINARY_NAME}.{os.getpid()}.tmp"
        env = dict(os.environ, CGO_ENABLED="0")
        result = subprocess.run(
            # -buildvcs=false: the checkout may have no commits yet, which breaks stamping.
            [go, "build", "-trimpath", "-buildvcs=false", "-o", str(tmp), "."],
            cwd=src_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tmp.unlink(missing_ok=True)
            output = (result.stdout + result.stderr).strip().splitlines()
            raise RuntimeError(
                f"go build failed (exit {result.returncode}):\n" + "\n".join(output[-40:])
            )
        # Atomic: a running lintas-ferretdb keeps its old inode.
        tmp.replace(binary)
        stamp_file.write_text(wanted + "\n")
        progress(f"ferretdb: built {binary} ({time.monotonic() - began:.1f}s)")
        return binary


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def ferretdb_process(state_dir: Path) -> ManagedProcess:
    """Return the ManagedProcess handle of FerretDB under ``state_dir``."""
    return ManagedProcess("ferretdb", Path(state_dir).resolve())


def ferretdb_address(state_dir: Path) -> str | None:
    """Return ``host:port`` FerretDB was last started with in ``state_dir``, if known."""
    argv = ferretdb_process(state_dir).recorded_argv() or []
    for flag, value in itertools.pairwise(argv):
        if flag == "-listen-addr":
            return value
    return None


def start_ferretdb(
    state_dir: Path,
    cache_dir: Path,
    port: int = 27017,
    timeout: float = 60.0,
    progress: Callable[[str], None] = print,
) -> ManagedProcess:
    """Start FerretDB (SQLite backend) on 127.0.0.1:``port`` and wait until it answers.

    Idempotent: if FerretDB under ``state_dir`` already runs, it is returned as is.
    Builds the binary if needed; the SQLite files live in ``state_dir/ferretdb/data/``.
    On failure the process is stopped and RuntimeError carries the log tail;
    PortInUseError if the port is taken by a process we did not start.
    """
    state_dir = Path(state_dir).resolve()
    proc = ferretdb_process(state_dir)
    with file_lock(state_dir / "run" / "ferretdb.lock"):
        if proc.is_running():
            return proc
        ensure_ports_free(
            {"mongo (FerretDB) port": port}, hint=" (--mongo-port or LINTAS_MONGO_PORT)"
        )
        binary = provision_ferretdb(cache_dir, progress)
        data_dir = state_dir / "ferretdb" / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(binary),
            "-listen-addr",
            f"{HOST}:{port}",
            "-sqlite-dir",
            f"{data_dir}/",
        ]
        progress(f"ferretdb: starting on {HOST}:{port} (data {data_dir})")
        proc.start(argv, cwd=state_dir / "ferretdb")
        try:
            wait_for_port(HOST, port, timeout, proc)
        except BaseException:
            proc.stop(timeout=10.0)
            raise
        return proc
