"""The three services and the console running as real processes against the test
servers."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lintas_intake.entrypoints.subscribers import cases_group
from lintas_shared.person_tokens import new_signing_key
from lintas_shared.topics import CASES, NOTIFICATIONS, REFERRALS
from lintas_tools.demo import (
    DemoTarget,
    load_or_create_keys,
    load_or_create_people,
    seed_demo,
    seed_demo_people,
    write_signing_key,
)
from lintas_tools.services import ServiceSpec, service_specs, start_service, stop_service

from tests.support.fixtures import PHONE_HASH_SECRET
from tests.support.kafka_groups import start_group_at_end
from tests.support.servers import REPO_ROOT, Servers

E2E_PEPPER = "e2e-api-key-pepper"


@dataclass(frozen=True)
class Stack:
    """The running services and the console, their demo keys and people, and where
    their SMS go."""

    urls: dict[str, str]
    keys: dict[str, str]
    sms_outbox: Path
    databases: dict[str, str]
    logs: dict[str, Path]
    #: This session's console key pair: the console signs with the private key (PEM);
    #: intake and referral verify with the public key (PEM).
    console_private_key: str
    console_public_key: str
    #: The console's demo people, as `make up` writes them to demo-keys.json's "console":
    #: {"caseworker" | "org_admin" | "programme" | "lawyer_hk" | "lawyer_sg" | "admin":
    #:  {"email": …, "password": …}}.
    people: dict[str, dict[str, str]]


@pytest.fixture(scope="session")
def stack(servers: Servers) -> Iterator[Stack]:
    """Start intake, referral, notify and the console on their own ports, databases and
    groups."""
    run = uuid.uuid4().hex[:8]
    state = REPO_ROOT / ".lintas" / "test-services" / run
    state.mkdir(parents=True)
    databases = {name: f"e2e_{name}_{run}" for name in ("intake", "referral", "notify", "console")}
    console_private_key, console_public_key = new_signing_key()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LINTAS_")}
    env.update(
        {
            "LINTAS_KAFKA_BOOTSTRAP": servers.kafka_bootstrap,
            "LINTAS_MONGODB_URI": servers.mongodb_uri,
            "LINTAS_TOPIC_PARTITIONS": "3",
            "LINTAS_NOTIFY_SMS_OUTBOX_PATH": str(state / "sms-outbox.jsonl"),
            "LINTAS_INTAKE_PORT": os.environ.get("LINTAS_TEST_INTAKE_PORT", "18080"),
            "LINTAS_REFERRAL_PORT": os.environ.get("LINTAS_TEST_REFERRAL_PORT", "18081"),
            "LINTAS_NOTIFY_PORT": os.environ.get("LINTAS_TEST_NOTIFY_PORT", "18082"),
            "LINTAS_CONSOLE_PORT": os.environ.get("LINTAS_TEST_CONSOLE_PORT", "18083"),
            "PYTHONUNBUFFERED": "1",
            # A dev stack, said explicitly: placeholder secrets are refused elsewhere.
            "LINTAS_ENVIRONMENT": "dev",
            "LINTAS_API_KEY_PEPPER": E2E_PEPPER,
            "LINTAS_KEYVAULT_DATABASE": f"e2e_keyvault_{run}",
            # Known to the tests, so they can find a phone's records by its keyed hash.
            "LINTAS_PHONE_HASH_KEY": PHONE_HASH_SECRET,
            # Intake and referral accept the person tokens this session's console signs.
            "LINTAS_CONSOLE_PUBLIC_KEY": console_public_key,
            "LINTAS_CONSOLE_SIGNING_KEY_PATH": str(state / "console-signing-key.pem"),
            # As on `make up`; the second factor is tested in the console's own tests.
            "LINTAS_CONSOLE_REQUIRE_SECOND_FACTOR": "false",
            # The tests' webhook receiver is on 127.0.0.1: allowed on this dev stack only.
            "LINTAS_REFERRAL_WEBHOOK_ALLOW_LOOPBACK": "true",
        }
    )
    write_signing_key(state / "console-signing-key.pem", console_private_key)
    for name, database in databases.items():
        env[f"LINTAS_{name.upper()}_DATABASE"] = database
        if name != "console":  # the console reads no topic
            # Under the service's group prefix: its Kafka principal may join no other.
            env[f"LINTAS_{name.upper()}_CONSUMER_GROUP"] = f"lintas-{name}-e2e-{run}"
    keys = load_or_create_keys(state / "demo-keys.json")
    env["LINTAS_NOTIFY_INBOUND_TOKEN"] = keys["sms_inbound_token"]
    # The suite runs on the wall clock and every demo case has the same phone: quiet
    # hours and the per-worker daily limit are tested in notify's own tests instead.
    env["LINTAS_NOTIFY_QUIET_START"] = env["LINTAS_NOTIFY_QUIET_END"] = "00:00"
    env["LINTAS_NOTIFY_WORKER_DAILY_LIMIT"] = "1000"
    asyncio.run(
        seed_demo(
            DemoTarget(
                servers.mongodb_uri,
                databases["intake"],
                databases["referral"],
                E2E_PEPPER,
                # The whole suite's cases go to these partners and few are closed: the
                # default 50 open referrals would leave later tests' cases unassigned
                # (capacity itself is tested in referral's own tests).
                partner_capacity=100_000,
            ),
            keys,
        )
    )
    people = load_or_create_people(state / "demo-keys.json")
    asyncio.run(seed_demo_people(servers.mongodb_uri, databases["console"], people))
    # A new deployment: its consumers start at the end of the shared topics, not at
    # every record the earlier tests of the session left there (cases whose keys live
    # in other tests' vaults, which would each be retried and parked before the
    # suite's own records, on the same partitions, get their turn).
    groups = {
        name: env[f"LINTAS_{name.upper()}_CONSUMER_GROUP"]
        for name in ("intake", "referral", "notify")
    }
    for group, topic in (
        (groups["intake"], REFERRALS),
        (groups["intake"], NOTIFICATIONS),
        (cases_group(groups["intake"]), CASES),
        (groups["referral"], CASES),
        (f"{groups['referral']}-webhooks", REFERRALS),
        (groups["notify"], CASES),
        (f"{groups['notify']}.referrals", REFERRALS),
    ):
        asyncio.run(start_group_at_end(servers.kafka_bootstrap, group, topic))
    specs: list[ServiceSpec] = service_specs(env)
    urls = {s.name: s.url for s in specs}
    env["LINTAS_CONSOLE_INTAKE_URL"] = urls["intake"]
    env["LINTAS_CONSOLE_REFERRAL_URL"] = urls["referral"]
    env["LINTAS_CONSOLE_PUBLIC_URL"] = urls["console"]
    try:
        for spec in specs:
            start_service(spec, state, env, timeout=90)
        yield Stack(
            urls=urls,
            keys=keys,
            sms_outbox=state / "sms-outbox.jsonl",
            databases=databases,
            logs={s.name: state / "logs" / f"{s.name}.log" for s in specs},
            console_private_key=console_private_key,
            console_public_key=console_public_key,
            people=people,
        )
    finally:
        for spec in specs:
            stop_service(spec.name, state)
        asyncio.run(_drop(servers.mongodb_uri, [*databases.values(), f"e2e_keyvault_{run}"]))
        shutil.rmtree(state, ignore_errors=True)


async def _drop(uri: str, names: object) -> None:
    from lintas_shared.mongo import make_mongo_client

    client = make_mongo_client(uri, app_name="e2e-cleanup")
    try:
        for name in names:  # type: ignore[attr-defined]
            await client.drop_database(name)
    finally:
        await client.close()
