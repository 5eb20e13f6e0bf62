"""``lintas-stack`` / ``python -m lintas_deploy``: provision, start, stop and show the stack.

Defaults: state dir ``<repo root>/.lintas`` (env LINTAS_STATE_DIR), cache dir
``<state dir>/cache`` (LINTAS_CACHE_DIR), ports 9092/9093 for Kafka
(LINTAS_KAFKA_PORT, LINTAS_KAFKA_CONTROLLER_PORT) and 27017 for FerretDB
(LINTAS_MONGO_PORT). Command-line options win over the environment.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from lintas_deploy import REPO_ROOT
from lintas_deploy.ferretdb import (
    ferretdb_address,
    ferretdb_process,
    provision_ferretdb,
    start_ferretdb,
)
from lintas_deploy.kafka import kafka_address, kafka_process, provision_kafka, start_kafka
from lintas_deploy.processes import ManagedProcess

__all__ = ["main"]

SERVICES = ("kafka", "ferretdb")

MAX_PORT = 65535


class UsageError(Exception):
    """A bad option or environment value, reported without a traceback."""


def _progress(message: str) -> None:
    print(message, flush=True)


def _env_port(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return _port(raw)
    except argparse.ArgumentTypeError as exc:
        raise UsageError(f"{name}: {exc}") from None


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"port out of range 1-{MAX_PORT}: {value}")
    return value


def _state_dir(args: argparse.Namespace, *, create: bool = True) -> Path:
    if args.state_dir is not None:
        chosen = Path(args.state_dir)
    elif os.environ.get("LINTAS_STATE_DIR"):
        chosen = Path(os.environ["LINTAS_STATE_DIR"])
    else:
        chosen = REPO_ROOT / ".lintas"
    state_dir = chosen.expanduser().resolve()
    if not create:
        return state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    # Keeps git from ever seeing pids, logs, data and caches, wherever the dir is.
    ignore = state_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# created by lintas_deploy: nothing in here belongs in git\n*\n")
    return state_dir


def _cache_dir(args: argparse.Namespace, state_dir: Path | None) -> Path:
    if args.cache_dir is not None:
        return Path(args.cache_dir).expanduser().resolve()
    if os.environ.get("LINTAS_CACHE_DIR"):
        return Path(os.environ["LINTAS_CACHE_DIR"]).expanduser().resolve()
    if state_dir is None:
        state_dir = _state_dir(args)
    return state_dir / "cache"


def _show_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _selected(which: str) -> list[str]:
    return list(SERVICES) if which == "all" else [which]


def _cmd_provision(args: argparse.Namespace) -> int:
    cache_dir = _cache_dir(args, None)
    for name, provision in (("kafka", provision_kafka), ("ferretdb", provision_ferretdb)):
        began = time.monotonic()
        provision(cache_dir, _progress)
        _progress(f"{name}: provisioned in {time.monotonic() - began:.1f}s")
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    cache_dir = _cache_dir(args, state_dir)
    kafka_port = args.kafka_port or _env_port("LINTAS_KAFKA_PORT", 9092)
    controller_port = args.kafka_controller_port or _env_port("LINTAS_KAFKA_CONTROLLER_PORT", 9093)
    mongo_port = args.mongo_port or _env_port("LINTAS_MONGO_PORT", 27017)

    def kafka() -> tuple[ManagedProcess, str, str | None]:
        proc = start_kafka(
            state_dir,
            cache_dir,
            port=kafka_port,
            controller_port=controller_port,
            progress=_progress,
        )
        return proc, f"127.0.0.1:{kafka_port}", kafka_address(state_dir)

    def ferretdb() -> tuple[ManagedProcess, str, str | None]:
        proc = start_ferretdb(state_dir, cache_dir, port=mongo_port, progress=_progress)
        return proc, f"127.0.0.1:{mongo_port}", ferretdb_address(state_dir)

    starters = {"kafka": kafka, "ferretdb": ferretdb}
    for name in _selected(args.service):
        began = time.monotonic()
        proc, wanted, actual = starters[name]()
        address = actual or wanted
        where = f"(pid {proc.pid}, log {_show_path(proc.log_file)})"
        if proc.started_here:
            _progress(f"{name} ready on {address} {where} in {time.monotonic() - began:.1f}s")
        else:
            note = "" if address == wanted else f"; asked for {wanted}: stop it first to move it"
            _progress(f"{name} already running on {address} {where}{note}")
    return 0


def _processes(state_dir: Path) -> dict[str, ManagedProcess]:
    return {"kafka": kafka_process(state_dir), "ferretdb": ferretdb_process(state_dir)}


def _cmd_stop(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args, create=False)
    procs = _processes(state_dir)
    # Stop in reverse start order: FerretDB first, the broker last.
    for name in reversed(_selected(args.service)):
        proc = procs[name]
        pid = proc.pid
        if proc.stop():
            _progress(f"{name} stopped (pid {pid})")
        elif pid is not None:
            _progress(f"{name} was not running (removed stale pid file naming pid {pid})")
        else:
            _progress(f"{name} was not running")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args, create=False)
    addresses = {"kafka": kafka_address(state_dir), "ferretdb": ferretdb_address(state_dir)}
    _progress(f"state dir: {state_dir}")
    for name, proc in _processes(state_dir).items():
        if proc.is_running():
            _progress(
                f"{name}: running on {addresses[name] or '?'} "
                f"(pid {proc.pid}, log {_show_path(proc.log_file)})"
            )
        elif proc.pid is not None:
            _progress(f"{name}: stopped (stale pid file {_show_path(proc.pid_file)})")
        else:
            _progress(f"{name}: stopped")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lintas-stack",
        description="Provision and run the local Lintas stack: Apache Kafka (KRaft) "
        "and FerretDB (MongoDB wire protocol on SQLite), on 127.0.0.1 only.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def state_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--state-dir",
            help="where pids, logs and data live (env LINTAS_STATE_DIR; default <repo>/.lintas)",
        )

    def cache_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--cache-dir",
            help="where jars and the FerretDB binary are cached (env LINTAS_CACHE_DIR; "
            "default <state dir>/cache)",
        )

    def service_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("service", nargs="?", choices=("kafka", "ferretdb", "all"), default="all")

    provision = sub.add_parser("provision", help="fetch the Kafka jars and build FerretDB")
    state_opt(provision)
    cache_opt(provision)
    provision.set_defaults(func=_cmd_provision)

    start = sub.add_parser("start", help="provision if needed, start, wait until ready")
    service_arg(start)
    state_opt(start)
    cache_opt(start)
    start.add_argument("--kafka-port", type=_port, help="env LINTAS_KAFKA_PORT; default 9092")
    start.add_argument(
        "--kafka-controller-port",
        type=_port,
        help="env LINTAS_KAFKA_CONTROLLER_PORT; default 9093",
    )
    start.add_argument(
        "--mongo-port", type=_port, help="FerretDB port; env LINTAS_MONGO_PORT; default 27017"
    )
    start.set_defaults(func=_cmd_start)

    stop = sub.add_parser("stop", help="stop what our pid files name")
    service_arg(stop)
    state_opt(stop)
    stop.set_defaults(func=_cmd_stop)

    status = sub.add_parser("status", help="show what runs")
    state_opt(status)
    status.set_defaults(func=_cmd_status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = _parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("lintas-stack: interrupted", file=sys.stderr, flush=True)
        return 130
    except (UsageError, RuntimeError, ValueError, OSError) as exc:
        print(f"lintas-stack: error: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
