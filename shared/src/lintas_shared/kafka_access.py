"""What each service may do on Kafka: the one table the broker's ACLs are made from.

Each service logs in as its own principal and is allowed exactly this, nothing more
(the broker denies what no ACL allows):

- Read (and so Describe) the topics it consumes, in consumer groups whose names start
  with its group prefix (`lintas-intake`, ...);
- Write (and Create, so it can start on an empty broker) the topics it produces to: its
  own events, and the dead-letter topics of the topics it consumes;
- DescribeConfigs on those dead-letter topics (it checks their retention at start).

`apply_acls` makes the broker's ACLs for these principals exactly this table (it adds
what is missing and deletes what is not in it); the README's "Least privilege" table
says the same, and a test compares the broker's ACLs with it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from aiokafka import AIOKafkaClient
from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest

from lintas_shared import topics
from lintas_shared.kafka import ensure_topics
from lintas_shared.kafka_auth import KafkaAuth, client_auth
from lintas_shared.logging import get_logger

log = get_logger(__name__)


class ResourceType(IntEnum):
    """Kafka's ACL resource types (the subset used here)."""

    ANY = 1
    TOPIC = 2
    GROUP = 3


class PatternType(IntEnum):
    """Kafka's resource pattern types."""

    ANY = 1
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    """Kafka's ACL operations (the subset used here)."""

    ANY = 1
    READ = 3
    WRITE = 4
    CREATE = 5
    DESCRIBE_CONFIGS = 10


_ALLOW = 3
_ANY_PERMISSION = 1
_ANY_HOST = "*"


class Acl(NamedTuple):
    """One allow rule: `principal` may do `operation` on the resource, from any host."""

    principal: str
    resource_type: ResourceType
    pattern: PatternType
    resource: str
    operation: Operation


@dataclass(frozen=True)
class ServiceAccess:
    """One service's principal, the topics it reads and writes, and its groups."""

    service: str
    principal: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    group_prefix: str

    @property
    def topics(self) -> tuple[str, ...]:
        """Every topic it uses, read or written."""
        return tuple(dict.fromkeys(self.reads + self.writes))

    def acls(self) -> frozenset[Acl]:
        """The allow rules this service gets."""
        user = f"User:{self.principal}"
        rules = {
            Acl(user, ResourceType.TOPIC, PatternType.LITERAL, t, Operation.READ)
            for t in self.reads
        }
        for t in self.writes:
            rules.add(Acl(user, ResourceType.TOPIC, PatternType.LITERAL, t, Operation.WRITE))
            rules.add(Acl(user, ResourceType.TOPIC, PatternType.LITERAL, t, Operation.CREATE))
            if topics.is_dead_letter_topic(t):
                rules.add(
                    Acl(
                        user,
                        ResourceType.TOPIC,
                        PatternType.LITERAL,
                        t,
                        Operation.DESCRIBE_CONFIGS,
                    )
                )
        rules.add(
            Acl(user, ResourceType.GROUP, PatternType.PREFIXED, self.group_prefix, Operation.READ)
        )
        return frozenset(rules)


def _dlq(*names: str) -> tuple[str, ...]:
    return tuple(topics.dead_letter_topic(n) for n in names)


#: The table: each service writes only its own topic (and the dead-letter topics of
#: what it reads), so no service can put a record with another's `ce_source` on a
#: topic another service reads from it. Notify announces a texted STOP or START on its
#: own topic (`SmsPreferenceTexted`), not on intake's.
ACCESS: Final[Mapping[str, ServiceAccess]] = MappingProxyType(
    {
        "intake": ServiceAccess(
            service="intake",
            principal="intake",
            reads=(topics.CASES, topics.REFERRALS, topics.NOTIFICATIONS),
            writes=(topics.CASES, *_dlq(topics.CASES, topics.REFERRALS, topics.NOTIFICATIONS)),
            group_prefix="lintas-intake",
        ),
        "referral": ServiceAccess(
            service="referral",
            principal="referral",
            reads=(topics.CASES, topics.REFERRALS),
            writes=(topics.REFERRALS, *_dlq(topics.CASES, topics.REFERRALS)),
            group_prefix="lintas-referral",
        ),
        "notify": ServiceAccess(
            service="notify",
            principal="notify",
            reads=(topics.CASES, topics.REFERRALS),
            writes=(topics.NOTIFICATIONS, *_dlq(topics.CASES, topics.REFERRALS)),
            group_prefix="lintas-notify",
        ),
    }
)


def wanted_acls(access: Iterable[ServiceAccess] | None = None) -> frozenset[Acl]:
    """Every allow rule of the table."""
    chosen = ACCESS.values() if access is None else access
    return frozenset(rule for service in chosen for rule in service.acls())


async def _client(bootstrap: str, auth: KafkaAuth) -> AIOKafkaClient:
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap, client_id="lintas-acls", **auth.client_options()
    )
    await client.bootstrap()
    return client


async def _send(client: AIOKafkaClient, request: Any) -> Any:
    return await client.send(client.get_random_node(), request)


async def describe_acls(bootstrap: str, auth: KafkaAuth) -> frozenset[Acl]:
    """Every allow rule on the broker on topics and groups (needs the admin)."""
    client = await _client(bootstrap, auth)
    try:
        response = await _send(
            client,
            DescribeAclsRequest(
                ResourceType.ANY, None, PatternType.ANY, None, None, Operation.ANY, _ANY_PERMISSION
            ),
        )
    finally:
        await client.close()
    if response.error_code:
        raise RuntimeError(f"DescribeAcls failed: error {response.error_code}")
    found: set[Acl] = set()
    for resource_type, name, pattern, acls in response.resources:
        for principal, host, operation, permission in acls:
            if permission == _ALLOW and host == _ANY_HOST and resource_type in (2, 3):
                found.add(
                    Acl(
                        principal,
                        ResourceType(resource_type),
                        PatternType(pattern),
                        name,
                        Operation(operation),
                    )
                )
    return frozenset(found)


async def apply_acls(
    bootstrap: str, auth: KafkaAuth, access: Iterable[ServiceAccess] | None = None
) -> tuple[int, int]:
    """Make the ACLs of the table's principals exactly the table; returns (added, removed).

    Logs in as `auth`, which must be a super user (the admin). Rules of other principals
    are left alone.
    """
    wanted = wanted_acls(access)
    principals = {rule.principal for rule in wanted}
    have = await describe_acls(bootstrap, auth)
    ours = {rule for rule in have if rule.principal in principals}
    missing = sorted(wanted - ours)
    extra = sorted(ours - wanted)
    client = await _client(bootstrap, auth)
    try:
        for rule in missing:
            response = await _send(client, CreateAclsRequest(*_fields(rule)))
            for code, message in response.creation_responses:
                if code:
                    raise RuntimeError(f"CreateAcls {rule}: error {code} {message or ''}")
        for rule in extra:
            response = await _send(client, DeleteAclsRequest(*_fields(rule)))
            for code, message, _ in response.filter_responses:
                if code:
                    raise RuntimeError(f"DeleteAcls {rule}: error {code} {message or ''}")
    finally:
        await client.close()
    if missing or extra:
        log.info("kafka acls applied", added=len(missing), removed=len(extra))
    return len(missing), len(extra)


def _fields(rule: Acl) -> tuple[int, str, int, str, str, int, int]:
    return (
        int(rule.resource_type),
        rule.resource,
        int(rule.pattern),
        rule.principal,
        _ANY_HOST,
        int(rule.operation),
        _ALLOW,
    )


async def set_up(bootstrap: str, auth: KafkaAuth, partitions: int) -> tuple[int, int]:
    """A deployment's one-shot Kafka step, as the admin: create the source topics (so
    that a service reading one never waits for the service that writes it) and make the
    ACLs the table. Dead-letter topics are left to the services that write them, which
    create them with their retention."""
    await ensure_topics(bootstrap, topics.SOURCE_TOPICS, partitions=partitions, auth=auth)
    return await apply_acls(bootstrap, auth)


def main() -> None:
    """`python -m lintas_shared.kafka_access`: `set_up` with `LINTAS_KAFKA_BOOTSTRAP`,
    `LINTAS_TOPIC_PARTITIONS` [6] and the admin's `LINTAS_KAFKA_*` login
    (docker-compose runs it before the services start)."""
    bootstrap = os.environ.get("LINTAS_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    partitions = int(os.environ.get("LINTAS_TOPIC_PARTITIONS", "6"))
    added, removed = asyncio.run(set_up(bootstrap, client_auth(), partitions))
    print(f"kafka topics ensured; acls: {added} added, {removed} removed", flush=True)


if __name__ == "__main__":
    main()
