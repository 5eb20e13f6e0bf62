"""The system under test: its own Kafka, FerretDB and two instances of each service.

Everything listens on 127.0.0.1, on ports counted from one base port, with its state in
one directory; every process is tracked by the pid file `lintas_deploy` writes, so only
what this run started is ever signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lintas_deploy.ferretdb import ferretdb_process, start_ferretdb
from lintas_deploy.kafka import kafka_process, start_kafka
from lintas_deploy.processes import ManagedProcess
from lintas_shared.kafka import ensure_topics
from lintas_shared.kafka_access import apply_acls
from lintas_shared.kafka_auth import client_auth
from lintas_shared.topics import ALL_TOPICS
from lintas_tools.demo import DemoTarget, load_or_create_keys, seed_demo
from lintas_tools.services import ServiceSpec, start_service

PARTITIONS = 6
#: Topic limit raised above Kafka's 1 MiB default so that a 2 MB poison record is accepted.
TOPIC_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
PEPPER = "faults-api-key-pepper"
FACTORIES = {
    "intake": "lintas_intake.bootstrap:create_app",
    "referral": "lintas_referral.bootstrap:create_app",
    "notify": "lintas_notify.bootstrap:create_app",
}
#: Consumer groups (env LINTAS_<SERVICE>_CONSUMER_GROUP); notify adds `.referrals`.
#: Each under its service's group prefix: its Kafka principal may join no other group.
GROUPS = {name: f"lintas-{name}-faults" for name in FACTORIES}
DATABASES = {name: f"faults_{name}" for name in FACTORIES}
KEYVAULT_DATABASE = "faults_keyvault"


@dataclass(frozen=True)
class Ports:
    """Every port of one run, counted from `base`."""

    base: int

    @property
    def kafka(self) -> int:
        return self.base

    @property
    def controller(self) -> int:
        return self.base + 1

    @property
    def mongo(self) -> int:
        return self.base + 2

    def service(self, name: str, index: int) -> int:
        """intake 1-2: base+10, +11; referral: +12, +13; notify: +14, +15."""
        return self.base + 10 + 2 * list(FACTORIES).index(name) + (index - 1)


@dataclass
class Instance:
    """One service process."""

    service: str
    index: int
    spec: ServiceSpec
    env: dict[str, str]
    kills: int = 0

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class FaultStack:
    """Starts, breaks, restarts and finally stops the whole system."""

    state: Path
    cache: Path
    ports: Ports
    instances_per_service: int = 2
    progress: Callable[[str], None] = print
    instances: list[Instance] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports.kafka}"

    @property
    def mongodb_uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.ports.mongo}/"

    @property
    def sms_outbox(self) -> Path:
        return self.state / "sms-outbox.jsonl"

    def urls(self, service: str) -> list[str]:
        return [i.spec.url for i in self.instances if i.service == service]

    def of(self, service: str) -> list[Instance]:
        return [i for i in self.instances if i.service == service]

    def _start_kafka(self) -> None:
        start_kafka(
            self.state,
            self.cache,
            port=self.ports.kafka,
            controller_port=self.ports.controller,
            partitions=PARTITIONS,
            progress=self.progress,
        )

    def _start_ferretdb(self) -> None:
        start_ferretdb(self.state, self.cache, port=self.ports.mongo, progress=self.progress)

    def start(self) -> None:
        """Fresh servers, topics with 6 partitions, demo organisations, then the services."""
        self.state.mkdir(parents=True, exist_ok=True)
        self._start_kafka()
        self._start_ferretdb()
        asyncio.run(
            ensure_topics(
                self.bootstrap,
                ALL_TOPICS,
                partitions=PARTITIONS,
                config={"max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES)},
            )
        )
        asyncio.run(apply_acls(self.bootstrap, client_auth()))
        self.keys = load_or_create_keys(self.state / "demo-keys.json")
        asyncio.run(
            seed_demo(
                DemoTarget(self.mongodb_uri, DATABASES["intake"], DATABASES["referral"], PEPPER),
                self.keys,
            )
        )
        base = self._common_env()
        for service, factory in FACTORIES.items():
            for index in range(1, self.instances_per_service + 1):
                port = self.ports.service(service, index)
                env = {**base, f"LINTAS_{service.upper()}_PORT": str(port)}
                spec = ServiceSpec(f"{service}-{index}", factory, port)
                self.instances.append(Instance(service, index, spec, env))
        for instance in self.instances:
            self.progress(f"starting {instance.name} on {instance.spec.url}")
            start_service(instance.spec, self.state, instance.env, timeout=120)

    def _common_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LINTAS_")}
        env.update(
            {
                # A dev stack, said explicitly: placeholder secrets are refused elsewhere.
                "LINTAS_ENVIRONMENT": "dev",
                "LINTAS_KAFKA_BOOTSTRAP": self.bootstrap,
                "LINTAS_MONGODB_URI": self.mongodb_uri,
                "LINTAS_TOPIC_PARTITIONS": str(PARTITIONS),
                "LINTAS_NOTIFY_SMS_OUTBOX_PATH": str(self.sms_outbox),
                "LINTAS_API_KEY_PEPPER": PEPPER,
                "LINTAS_KEYVAULT_DATABASE": KEYVAULT_DATABASE,
                "LINTAS_NOTIFY_INBOUND_TOKEN": self.keys["sms_inbound_token"],
                # SMS go at once, whatever the hour, and never hit the daily limit.
                "LINTAS_NOTIFY_QUIET_START": "00:00",
                "LINTAS_NOTIFY_QUIET_END": "00:00",
                "LINTAS_NOTIFY_WORKER_DAILY_LIMIT": "100000",
                "PYTHONUNBUFFERED": "1",
            }
        )
        for service in FACTORIES:
            env[f"LINTAS_{service.upper()}_DATABASE"] = DATABASES[service]
            env[f"LINTAS_{service.upper()}_CONSUMER_GROUP"] = GROUPS[service]
        return env

    def process(self, instance: Instance) -> ManagedProcess:
        return ManagedProcess(instance.name, self.state)

    def sigkill(self, instance: Instance) -> None:
        """SIGKILL the instance (its whole process group) and wait until it is gone."""
        process = self.process(instance)
        pid = process.pid
        if pid is None or not process.is_running():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while process.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        instance.kills += 1

    def terminate(self, instance: Instance) -> None:
        """Stop gracefully (SIGTERM): the instance leaves its consumer groups."""
        self.process(instance).stop(timeout=30)

    def restart(self, instance: Instance, attempts: int = 6) -> None:
        """Start the instance again and wait until /readyz answers.

        Like a supervisor, try again (bounded) when it exits during start-up, e.g.
        because the broker or the store is itself being restarted at that moment.
        """
        for attempt in range(1, attempts + 1):
            try:
                start_service(instance.spec, self.state, instance.env, timeout=120)
                return
            except RuntimeError:
                self.process(instance).stop(timeout=10)
                if attempt == attempts:
                    raise
                self.progress(f"{instance.name} did not start (attempt {attempt}); again")
                time.sleep(2.0 * attempt)

    def restart_kafka(self) -> None:
        """Stop the broker (SIGTERM, SIGKILL after 30 s) and start it on the same data."""
        kafka_process(self.state).stop(timeout=30)
        self._start_kafka()

    def restart_ferretdb(self) -> None:
        """Stop FerretDB and start it again on the same SQLite directory."""
        ferretdb_process(self.state).stop(timeout=30)
        self._start_ferretdb()

    def stop(self) -> None:
        """Stop every service instance, then FerretDB and Kafka (each only if ours)."""
        for instance in self.instances:
            with contextlib.suppress(Exception):
                self.process(instance).stop(timeout=20)
        with contextlib.suppress(Exception):
            ferretdb_process(self.state).stop(timeout=20)
        with contextlib.suppress(Exception):
            kafka_process(self.state).stop(timeout=30)
