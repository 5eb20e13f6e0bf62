"""Each service's Kafka principal may do exactly what `lintas_shared.kafka_access` says,
on the real broker: SASL/SCRAM logins, and the StandardAuthorizer refusing the rest."""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)
from lintas_deploy.kafka import ADMIN_USER, DEV_PASSWORD, SERVICE_USERS
from lintas_shared import topics
from lintas_shared.envelope import CloudEvent, to_kafka_record
from lintas_shared.kafka_access import ACCESS, apply_acls, describe_acls, wanted_acls
from lintas_shared.kafka_auth import (
    ADMIN_PRINCIPAL,
    DEV_KAFKA_PASSWORD,
    KafkaAuth,
    client_auth,
)

from tests.support.servers import REPO_ROOT, Servers


def login(service: str, password: str = DEV_PASSWORD) -> dict[str, object]:
    """aiokafka options to log in as `service`'s own principal."""
    return KafkaAuth(ACCESS[service].principal, password).client_options()


async def produce(bootstrap: str, service: str, topic: str) -> None:
    """Produce one well-formed event of a type no consumer handles (so it is skipped,
    not parked, by the services other tests run)."""
    event = CloudEvent(
        id=str(uuid.uuid4()),
        source=f"/lintas/{service}",
        type="org.lintas.test.least-privilege",
        subject=str(uuid.uuid4()),
        time=datetime.now(UTC),
        data={},
    )
    record = to_kafka_record(event)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", request_timeout_ms=10_000, **login(service)
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            record.value,
            key=record.key,
            headers=[(k, v.encode()) for k, v in record.headers.items()],
        )
    finally:
        await producer.stop()


async def read_from_start(bootstrap: str, service: str, topic: str, group: str) -> None:
    """Join `group` and read `topic` from its start (one poll)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        request_timeout_ms=10_000,
        **login(service),
    )
    try:
        await consumer.start()
        await consumer.getmany(timeout_ms=2_000)
    finally:
        await consumer.stop()


def group_of(service: str) -> str:
    return f"{ACCESS[service].group_prefix}-test-{uuid.uuid4().hex[:8]}"


async def test_notify_may_write_its_own_topic_but_not_referrals(servers: Servers) -> None:
    await produce(servers.kafka_bootstrap, "notify", topics.NOTIFICATIONS)
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(servers.kafka_bootstrap, "notify", topics.REFERRALS)


async def test_notify_may_not_write_intakes_topic(servers: Servers) -> None:
    # A texted STOP goes on notify's own topic (SmsPreferenceTexted): nothing of notify's
    # belongs on intake's, so it cannot put a record claiming to be intake's there.
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(servers.kafka_bootstrap, "notify", topics.CASES)


async def test_referral_may_not_write_intakes_topic(servers: Servers) -> None:
    await produce(servers.kafka_bootstrap, "referral", topics.REFERRALS)
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(servers.kafka_bootstrap, "referral", topics.CASES)


async def test_a_service_may_not_write_a_dead_letter_topic_it_does_not_consume(
    servers: Servers,
) -> None:
    with pytest.raises(TopicAuthorizationFailedError):
        await produce(
            servers.kafka_bootstrap, "referral", topics.dead_letter_topic(topics.NOTIFICATIONS)
        )


async def test_a_service_may_not_read_a_topic_it_does_not_use(servers: Servers) -> None:
    bootstrap = servers.kafka_bootstrap
    await read_from_start(bootstrap, "notify", topics.CASES, group_of("notify"))
    for service, topic in (
        ("notify", topics.NOTIFICATIONS),  # written, never read
        ("referral", topics.NOTIFICATIONS),
        ("intake", topics.dead_letter_topic(topics.CASES)),  # only `lintas dlq` reads these
    ):
        with pytest.raises(TopicAuthorizationFailedError):
            await read_from_start(bootstrap, service, topic, group_of(service))


async def test_a_service_may_not_join_another_services_group(servers: Servers) -> None:
    with pytest.raises(GroupAuthorizationFailedError):
        await read_from_start(servers.kafka_bootstrap, "notify", topics.CASES, group_of("intake"))


async def test_a_service_may_not_commit_offsets_for_another_services_group(
    servers: Servers,
) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=servers.kafka_bootstrap,
        group_id=group_of("intake"),
        enable_auto_commit=False,
        request_timeout_ms=10_000,
        **login("referral"),
    )
    await consumer.start()
    try:
        partition = TopicPartition(topics.CASES, 0)
        consumer.assign([partition])
        with pytest.raises(GroupAuthorizationFailedError):
            await consumer.commit({partition: 0})
    finally:
        await consumer.stop()


async def test_no_login_or_a_wrong_password_cannot_connect(servers: Servers) -> None:
    anonymous = AIOKafkaAdminClient(
        bootstrap_servers=servers.kafka_bootstrap, request_timeout_ms=5_000
    )
    with pytest.raises(KafkaConnectionError):
        await anonymous.start()
    await anonymous.close()
    wrong = AIOKafkaAdminClient(
        bootstrap_servers=servers.kafka_bootstrap,
        request_timeout_ms=5_000,
        **login("intake", password="not-the-password"),
    )
    with pytest.raises(KafkaConnectionError):
        await wrong.start()
    await wrong.close()


async def test_the_brokers_acls_are_exactly_the_table(servers: Servers) -> None:
    assert await describe_acls(servers.kafka_bootstrap, client_auth()) == wanted_acls()


async def test_applying_the_table_removes_a_rule_that_is_not_in_it(servers: Servers) -> None:
    bootstrap, admin = servers.kafka_bootstrap, client_auth()
    wider = replace(ACCESS["notify"], reads=(*ACCESS["notify"].reads, topics.NOTIFICATIONS))
    try:
        assert await apply_acls(bootstrap, admin, [wider]) == (1, 0)
        assert await describe_acls(bootstrap, admin) != wanted_acls()
    finally:
        assert await apply_acls(bootstrap, admin) == (0, 1)
    assert await describe_acls(bootstrap, admin) == wanted_acls()


def test_the_broker_has_a_login_for_each_service_of_the_table() -> None:
    assert {a.principal for a in ACCESS.values()} == set(SERVICE_USERS)
    assert ADMIN_USER == ADMIN_PRINCIPAL
    assert ADMIN_USER not in SERVICE_USERS
    # The clients' default password is the one the dev and test brokers are formatted with.
    assert DEV_KAFKA_PASSWORD == DEV_PASSWORD


def _readme_table() -> dict[str, tuple[str, str, str, str]]:
    """README's least-privilege table: service -> (principal, reads, writes, groups)."""
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index("| service | Kafka principal |")
    rows: dict[str, tuple[str, str, str, str]] = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = (cells[1], cells[2], cells[3], cells[4])
    return rows


def _names(cell: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", cell))


def test_the_readme_table_is_the_table() -> None:
    rows = _readme_table()
    # Services without a Kafka login (the console) say so in every Kafka column.
    logins = {service for service, row in rows.items() if _names(row[0])}
    assert logins == set(ACCESS)
    for service in set(rows) - logins:
        assert not any(_names(cell) for cell in rows[service]), service
    for service, access in ACCESS.items():
        principal, reads, writes, groups = rows[service]
        assert _names(principal) == {access.principal}, service
        assert _names(reads) == set(access.reads), service
        assert _names(writes) == set(access.writes), service
        assert _names(groups) == {f"{access.group_prefix}*"}, service
