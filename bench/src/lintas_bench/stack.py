"""A fresh Kafka, FerretDB and the three services, on the benchmark's own ports.

Everything is started through the project's launchers (`lintas_deploy`, `lintas_tools`),
tracked by pid files under the benchmark's state dir, and stopped by pid at the end,
even when the run fails or is interrupted.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lintas_deploy.ferretdb import ferretdb_process, provision_ferretdb
from lintas_deploy.kafka import kafka_process, start_kafka
from lintas_deploy.processes import ManagedProcess, ensure_ports_free, wait_for_port
from lintas_intake.domain.organisation import OrganisationKind
from lintas_shared.kafka import ensure_topics
from lintas_shared.kafka_access import apply_acls
from lintas_shared.kafka_auth import client_auth
from lintas_shared.topics import ALL_TOPICS
from lintas_tools.organisations import Directories, OrganisationAdmin
from lintas_tools.services import ServiceSpec, service_specs, start_service, stop_service

from lintas_bench.config import BenchConfig

SERVICES = ("intake", "referral", "notify")
GROUPS = {name: f"lintas-{name}" for name in SERVICES}
DATABASES = {"intake": "lintas_intake", "referral": "lintas_referral", "notify": "lintas_notify"}
#: A legal partner that never runs out of room: the default (50 open referrals) would
#: turn every later case into "unassigned" and measure something else.
PARTNER_CAPACITY = 10_000_000


@dataclass(frozen=True)
class Stack:
    """The running servers and services of one benchmark run."""

    kafka_bootstrap: str
    mongodb_uri: str
    intake_url: str
    ferretdb_debug_url: str
    ngo_api_key: str
    state_dir: Path
    pids: dict[str, int]
    service_env: dict[str, str]
    notes: tuple[str, ...]


def service_environment(config: BenchConfig, state: Path, pepper: str) -> dict[str, str]:
    """The services' environment: the caller's, minus any LINTAS_* of another stack."""
    ports = config.ports
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINTAS_")}
    env.update(
        {
            # A dev stack, said explicitly: placeholder secrets are refused elsewhere.
            "LINTAS_ENVIRONMENT": "dev",
            "LINTAS_KAFKA_BOOTSTRAP": f"127.0.0.1:{ports.kafka}",
            "LINTAS_MONGODB_URI": f"mongodb://127.0.0.1:{ports.mongo}/",
            "LINTAS_TOPIC_PARTITIONS": str(config.topic_partitions),
            "LINTAS_STATE_DIR": str(state),
            "LINTAS_INTAKE_PORT": str(ports.intake),
            "LINTAS_REFERRAL_PORT": str(ports.referral),
            "LINTAS_NOTIFY_PORT": str(ports.notify),
            "LINTAS_NOTIFY_SMS_OUTBOX_PATH": str(state / "sms-outbox.jsonl"),
            "LINTAS_API_KEY_PEPPER": pepper,
            "LINTAS_NOTIFY_INBOUND_TOKEN": secrets.token_urlsafe(24),
            # SMS go at once: no quiet hours (equal start and end turn them off), no
            # per-worker daily cap, and a provider throttle far above the offered load.
            "LINTAS_NOTIFY_QUIET_START": "00:00",
            "LINTAS_NOTIFY_QUIET_END": "00:00",
            "LINTAS_NOTIFY_WORKER_DAILY_LIMIT": "1000000",
            "LINTAS_NOTIFY_PROVIDER_RATE_PER_SECOND": f"{config.sms_provider_rate:g}",
            # The load comes from one NGO key: its rate limit would cap the ladder.
            "LINTAS_HTTP_RATE_LIMIT_PER_MINUTE": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    for name in SERVICES:
        env[f"LINTAS_{name.upper()}_DATABASE"] = DATABASES[name]
        env[f"LINTAS_{name.upper()}_CONSUMER_GROUP"] = GROUPS[name]
    env.update(config.service_env)
    return env


def stack_notes(config: BenchConfig) -> tuple[str, ...]:
    """What the run changes from the defaults of `make up`, to be printed with the table."""
    return (
        "notify quiet hours off for the run (LINTAS_NOTIFY_QUIET_START = QUIET_END = 00:00): "
        "the default 21:00-07:00 would defer SMS by up to ten hours",
        f"notify provider throttle {config.sms_provider_rate:g}/s (default 10/s), worker "
        "daily limit 1,000,000 (default 3); every case has its own generated phone",
        f"one NGO and one Hong Kong legal partner with capacity {PARTNER_CAPACITY:,} "
        "(the default 50 would leave later cases unassigned)",
        f"{config.topic_partitions} partitions per topic; services log JSON at INFO to files",
        "per-key HTTP rate limit off (LINTAS_HTTP_RATE_LIMIT_PER_MINUTE=0; default 6,000 a "
        "minute): the whole load comes from one NGO key",
        *(
            f"{name}={value} for every service (--service-env)"
            for name, value in config.service_env
        ),
    )


async def _seed(uri: str, pepper: str) -> str:
    """An NGO and a Hong Kong legal partner; returns the NGO's API key (never printed)."""
    admin = OrganisationAdmin(Directories(uri, DATABASES["intake"], DATABASES["referral"], pepper))
    try:
        ngo = await admin.create("Bench NGO", OrganisationKind.NGO, "ID", ("id",), (), None)
        await admin.create(
            "Bench HK legal partner", OrganisationKind.LEGAL, "HK", (), (), PARTNER_CAPACITY
        )
    finally:
        await admin.close()
    return str(ngo["api_key"])


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM are ignored inside the block (then handled as before): a second
    signal while everything is being stopped (Ctrl-C reaches `uv run` and the bench, and
    `uv run` passes it on) would cut the stop short and leave servers running."""
    held = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)


def _stop_leftovers(state: Path) -> None:
    """Stop what an interrupted earlier run under this state dir left running (by pid)."""
    for name in SERVICES:
        stop_service(name, state)
    for process in (ferretdb_process(state), kafka_process(state)):
        process.stop()


@contextmanager
def running_stack(config: BenchConfig, say: Callable[[str], None]) -> Iterator[Stack]:
    """Start fresh servers and services; stop all of them when the block ends."""
    state = config.state_dir.resolve()
    cache = Path(os.environ.get("LINTAS_CACHE_DIR", ".lintas/cache")).resolve()
    _stop_leftovers(state)
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    ports = config.ports
    pepper = secrets.token_urlsafe(24)
    try:
        say(f"starting Kafka on 127.0.0.1:{ports.kafka} and FerretDB on 127.0.0.1:{ports.mongo}")
        start_kafka(
            state,
            cache,
            port=ports.kafka,
            controller_port=ports.kafka_controller,
            partitions=config.topic_partitions,
            progress=lambda _m: None,
        )
        _start_ferretdb(state, cache, ports.mongo, ports.ferretdb_debug, config.ferretdb_log_level)
        bootstrap = f"127.0.0.1:{ports.kafka}"
        uri = f"mongodb://127.0.0.1:{ports.mongo}/"
        asyncio.run(ensure_topics(bootstrap, ALL_TOPICS, partitions=config.topic_partitions))
        asyncio.run(apply_acls(bootstrap, client_auth()))
        api_key = asyncio.run(_seed(uri, pepper))
        env = service_environment(config, state, pepper)
        # The three services the load goes through (not the console: nobody signs in).
        specs: list[ServiceSpec] = [s for s in service_specs(env) if s.name in SERVICES]
        pids: dict[str, int] = {}
        for spec in specs:
            say(f"starting {spec.name} on {spec.url}")
            process = start_service(spec, state, env, timeout=180)
            pids[spec.name] = _pid(process)
        pids["ferretdb"] = _pid(ferretdb_process(state))
        pids["kafka"] = _pid(kafka_process(state))
        yield Stack(
            kafka_bootstrap=bootstrap,
            mongodb_uri=uri,
            intake_url=specs[0].url,
            ferretdb_debug_url=f"http://127.0.0.1:{ports.ferretdb_debug}",
            ngo_api_key=api_key,
            state_dir=state,
            pids=pids,
            service_env=env,
            notes=stack_notes(config),
        )
    finally:
        say("stopping the services, FerretDB and Kafka")
        with signals_held():
            _stop_leftovers(state)
        # The data is only this run's load; the logs stay for a look afterwards.
        for data in (state / "kafka" / "data", state / "ferretdb" / "data"):
            shutil.rmtree(data, ignore_errors=True)


def _start_ferretdb(
    state: Path, cache: Path, port: int, debug_port: int, log_level: str = "info"
) -> None:
    """FerretDB as `lintas_deploy.ferretdb.start_ferretdb` starts it, plus the wrapper's
    `-debug-addr`, so Go's CPU profile of the store can be taken during the profile step."""
    ensure_ports_free({"mongo (FerretDB) port": port, "FerretDB debug port": debug_port})
    binary = provision_ferretdb(cache, lambda _m: None)
    data = state / "ferretdb" / "data"
    data.mkdir(parents=True, exist_ok=True)
    process = ferretdb_process(state)
    process.start(
        [
            str(binary),
            "-listen-addr",
            f"127.0.0.1:{port}",
            "-sqlite-dir",
            f"{data}/",
            "-debug-addr",
            f"127.0.0.1:{debug_port}",
            "-log-level",
            log_level,
        ],
        cwd=state / "ferretdb",
    )
    try:
        wait_for_port("127.0.0.1", port, 60.0, process)
    except BaseException:
        process.stop(timeout=10.0)
        raise


def _pid(process: ManagedProcess) -> int:
    pid = process.pid
    if pid is None:
        raise RuntimeError(f"{process.name} has no pid file")
    return pid
