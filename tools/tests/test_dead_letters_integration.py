"""`lintas dlq` on the real broker and store: records parked by the real consumer path
are listed, shown, replayed once after the cause is fixed, and discarded; a record
parked truncated is never replayed; dead-letter topics keep their records."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from lintas_shared.consumer import (
    EventConsumer,
    FetchPolicy,
    PermanentEventError,
    RetryPolicy,
    subscribe,
)
from lintas_shared.envelope import CloudEvent, to_kafka_record
from lintas_shared.events import CaseSubmitted
from lintas_shared.kafka import KafkaEventPublisher, ensure_topics, make_broker
from lintas_shared.kafka_auth import client_auth
from lintas_shared.topics import CASES, DLQ_TOPIC_CONFIG, dead_letter_topic
from lintas_tools.cli import main

from tests.support.fixtures import case_submitted
from tests.support.kafka import SeenRecord, collect, eventually, produce_raw
from tests.support.kafka_topics import private_topic, private_topic_name
from tests.support.servers import Servers

pytestmark = pytest.mark.integration
OPERATOR = "test-operator"
POISON = b'{"worker": {"phone": "+6281234567890"'  # cut short: not JSON


class FixableHandler:
    """A handler that rejects some cases until the operator "fixes the cause", and applies
    each event at most once (by CloudEvents source and id), as the services' handlers do."""

    def __init__(self, broken_cases: set[str]) -> None:
        self.broken_cases = broken_cases
        self.seen: set[str] = set()
        self.applied: list[str] = []

    async def __call__(self, event: CloudEvent) -> None:
        if event.subject in self.broken_cases:
            raise PermanentEventError(f"no case {event.subject}")
        if event.dedupe_key in self.seen:
            return
        self.seen.add(event.dedupe_key)
        self.applied.append(event.id)


@asynccontextmanager
async def consuming(
    servers: Servers, topic: str, handler: FixableHandler, name: str
) -> AsyncIterator[EventConsumer]:
    """A real consumer (FastStream subscriber, explicit acks, DLQ) in its own group."""
    broker = make_broker(servers.kafka_bootstrap, client_id=f"test-{name}")
    consumer = EventConsumer(
        name,
        {CaseSubmitted.TYPE: handler},
        KafkaEventPublisher(broker),
        RetryPolicy(attempts=2, base_delay=0.05),
    )
    subscribe(
        broker,
        topic,
        group_id=f"g-{name}-{uuid.uuid4().hex[:8]}",
        consumer=consumer,
        fetch=FetchPolicy(),
    )
    await broker.start()
    try:
        yield consumer
    finally:
        await broker.stop()


@pytest.fixture
def cli_env(
    servers: Servers, database_name: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The CLI's environment: the test servers and a fresh ledger database."""
    env = {
        "LINTAS_KAFKA_BOOTSTRAP": servers.kafka_bootstrap,
        "LINTAS_MONGODB_URI": servers.mongodb_uri,
        "LINTAS_OPS_DATABASE": database_name,
        "LINTAS_OPERATOR": OPERATOR,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


async def lintas(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `lintas ARGV` through its entry point (in a thread: it runs its own loop).

    Its answer is read from its own stream: the consumers in this process log to stdout.
    """
    capsys.readouterr()
    answer = io.StringIO()
    code = await asyncio.to_thread(partial(main, list(argv), out=answer))
    return code, answer.getvalue(), capsys.readouterr().err


async def end_offset(bootstrap: str, topic: str) -> int:
    """How many records a one-partition topic holds."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, **client_auth().client_options(), group_id=None
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def parked(servers: Servers, topic: str, count: int) -> list[SeenRecord]:
    return await collect(
        servers.kafka_bootstrap, dead_letter_topic(topic), lambda r: True, count=count
    )


async def test_park_list_show_replay_once_discard(
    servers: Servers, cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    topic = await private_topic(servers.kafka_bootstrap)
    dlq = dead_letter_topic(topic)
    good_case, broken_case = f"case-{uuid.uuid4()}", f"case-{uuid.uuid4()}"
    poison_id = f"poison-{uuid.uuid4()}"
    failing = case_submitted(broken_case)
    good = case_submitted(good_case)
    handler = FixableHandler({broken_case})

    async with consuming(servers, topic, handler, "dlq-test"):
        # Through the real consumer path: a malformed record, then an event its handler
        # rejects for good (an unknown case), then one that is processed.
        await produce_raw(
            servers.kafka_bootstrap,
            topic,
            POISON,
            key=b"case-poison",
            headers={**to_kafka_record(case_submitted("case-poison")).headers, "ce_id": poison_id},
        )
        for event in (failing, good):
            record = to_kafka_record(event)
            await produce_raw(
                servers.kafka_bootstrap, topic, record.value, key=record.key, headers=record.headers
            )
        poison_entry, failing_entry = await parked(servers, topic, 2)
        await eventually(lambda: handler.applied == [good.id])
        assert poison_entry.headers["ce_id"] == poison_id
        assert failing_entry.headers["ce_id"] == failing.id
        poison_ref = f"{dlq}:0:{poison_entry.offset}"
        failing_ref = f"{dlq}:0:{failing_entry.offset}"
        sealed_phone = failing.data["worker"]["phone"]

        # list: one line per parked message, after a header; never a payload.
        code, out, _ = await lintas(capsys, "dlq", "list", "--topic", topic)
        assert code == 0
        header, *lines = out.splitlines()
        assert header.split()[:3] == ["ID", "STATE", "FAILED"]
        assert [line.split()[0] for line in lines] == [poison_ref, failing_ref]
        poison_line, failing_line = lines
        assert "pending" in poison_line
        assert "dlq-test" in poison_line
        assert f"{topic}:0:0" in poison_line
        assert poison_id in poison_line
        assert "malformed: body is not JSON" in poison_line
        assert f"{topic}:0:1" in failing_line
        assert f"{CaseSubmitted.TYPE}  {failing.id}" in failing_line
        assert f"rejected: no case {broken_case}" in failing_line
        assert sealed_phone not in out
        assert "+6281234567890" not in out
        assert '"worker"' not in out

        # list --json parses and carries the same facts.
        code, out, _ = await lintas(capsys, "dlq", "list", "--topic", dlq, "--json")
        assert code == 0
        listed = json.loads(out)
        assert [e["id"] for e in listed] == [poison_ref, failing_ref]
        assert listed[1]["source"] == {"topic": topic, "partition": 0, "offset": 1}
        assert listed[1]["event_type"] == CaseSubmitted.TYPE
        assert listed[1]["event_id"] == failing.id
        assert listed[1]["consumer"] == "dlq-test"
        assert listed[1]["state"] == "pending"
        assert listed[1]["failed_at"].startswith("20")
        assert sealed_phone not in out

        # show a valid CloudEvent: headers, reason, size; not the payload.
        code, out, _ = await lintas(capsys, "dlq", "show", failing_ref)
        assert code == 0
        assert f"rejected: no case {broken_case}" in out
        assert f"{len(failing_entry.value or b'')} bytes, a valid CloudEvent" in out
        assert "ce_id" in out
        assert failing.id in out
        assert "lintas_dlq_source_offset" in out
        assert sealed_phone not in out
        # show a malformed record by TOPIC OFFSET: its payload, phone numbers masked.
        code, out, _ = await lintas(capsys, "dlq", "show", topic, str(poison_entry.offset))
        assert code == 0
        assert "not a valid CloudEvent" in out
        assert '{"worker": {"phone": "[redacted]"' in out
        assert "+6281234567890" not in out
        code, out, _ = await lintas(capsys, "dlq", "show", failing_ref, "--json")
        shown = json.loads(out)
        assert shown["valid_cloudevent"] is True
        assert "payload_excerpt" not in shown
        assert shown["payload_bytes"] == len(failing_entry.value or b"")

        # Fix the cause, replay: the event is processed, once, as it was.
        handler.broken_cases.clear()
        before = await end_offset(servers.kafka_bootstrap, topic)
        code, out, _ = await lintas(capsys, "dlq", "replay", failing_ref)
        assert code == 0, out
        assert out.splitlines()[0] == f"replayed  {failing_ref} -> {topic}:0:{before}"
        await eventually(lambda: failing.id in handler.applied)
        [replayed] = await collect(
            servers.kafka_bootstrap, topic, lambda r: r.offset == before, timeout=30
        )
        original = to_kafka_record(failing)
        assert replayed.key == original.key
        assert replayed.value == original.value
        assert {k: v for k, v in replayed.headers.items() if k.startswith("ce_")} == {
            k: v for k, v in original.headers.items() if k.startswith("ce_")
        }
        assert not any(k.startswith("lintas_dlq_") for k in replayed.headers)

        # Replay again (one entry, then all): nothing reaches the topic.
        code, out, _ = await lintas(capsys, "dlq", "replay", failing_ref)
        assert code == 0
        assert out.startswith(f"skipped   {failing_ref}: already replayed by {OPERATOR}")
        assert await end_offset(servers.kafka_bootstrap, topic) == before + 1

        # Discard the poison, with who and why; a second discard and a replay skip it.
        code, out, _ = await lintas(
            capsys, "dlq", "discard", poison_ref, "--reason", "truncated by a test producer"
        )
        assert (code, out.splitlines()[0]) == (0, f"discarded {poison_ref}")
        code, out, _ = await lintas(capsys, "dlq", "discard", poison_ref, "--reason", "again")
        assert code == 0
        assert "already discarded" in out
        code, out, _ = await lintas(capsys, "dlq", "replay", "--all", "--topic", topic)
        assert (code, out) == (0, "nothing to replay\n")
        assert await end_offset(servers.kafka_bootstrap, topic) == before + 1

        # Handled entries are hidden; --all-states shows them with their state.
        code, out, err = await lintas(capsys, "dlq", "list", "--topic", topic)
        assert out.splitlines()[1:] == []
        assert "2 handled" in err
        code, out, _ = await lintas(
            capsys, "dlq", "list", "--topic", topic, "--all-states", "--json"
        )
        states = {e["id"]: e for e in json.loads(out)}
        assert states[failing_ref]["state"] == "replayed"
        assert states[failing_ref]["handled"]["by"] == OPERATOR
        assert states[failing_ref]["handled"]["to"] == f"{topic}:0:{before}"
        assert states[poison_ref]["state"] == "discarded"
        assert states[poison_ref]["handled"]["reason"] == "truncated by a test producer"

        # A record the consumer processed before, replayed, changes nothing: park a copy
        # of the good event as if another consumer had given up on it, and replay it.
        good_record = to_kafka_record(good)
        await produce_raw(
            servers.kafka_bootstrap,
            dlq,
            good_record.value,
            key=good_record.key,
            headers={
                **good_record.headers,
                "lintas_dlq_reason": "failed after 3 attempts: RuntimeError: elsewhere",
                "lintas_dlq_source_topic": topic,
                "lintas_dlq_source_partition": "0",
                "lintas_dlq_source_offset": "2",
                "lintas_dlq_consumer": "another-consumer",
                "lintas_dlq_failed_at": "2026-09-16T00:00:00+00:00",
            },
        )
        code, out, _ = await lintas(capsys, "dlq", "replay", "--all", "--topic", topic)
        assert code == 0
        assert out.startswith(f"replayed  {dlq}:0:2 -> {topic}:0:{before + 1}")
        # The next record on the topic is handled after the replayed copy (one partition).
        marker = case_submitted(f"case-{uuid.uuid4()}")
        record = to_kafka_record(marker)
        await produce_raw(
            servers.kafka_bootstrap, topic, record.value, key=record.key, headers=record.headers
        )
        await eventually(lambda: marker.id in handler.applied)
    assert handler.applied == [good.id, failing.id, marker.id]


async def test_replaying_a_record_two_consumers_parked_sends_it_once(
    servers: Servers, cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    topic = await private_topic(servers.kafka_bootstrap)
    dlq = dead_letter_topic(topic)
    handlers = FixableHandler(set()), FixableHandler(set())
    async with (
        consuming(servers, topic, handlers[0], "one"),
        consuming(servers, topic, handlers[1], "two"),
    ):
        await produce_raw(
            servers.kafka_bootstrap, topic, b"not json", key=b"k", headers={"ce_id": "x"}
        )
        first, second = await parked(servers, topic, 2)
        assert {first.headers["lintas_dlq_consumer"], second.headers["lintas_dlq_consumer"]} == {
            "one",
            "two",
        }

        code, out, _ = await lintas(capsys, "dlq", "replay", f"{dlq}:0:{first.offset}", "--json")
        assert code == 0
        result = json.loads(out)
        assert result["counts"] == {"replayed": 1}
        [outcome] = result["outcomes"]
        assert outcome["to"] == f"{topic}:0:1"
        assert outcome["covers"] == [f"{dlq}:0:{second.offset}"]
        # Both consumers get the one copy and, as it is still malformed, park it again.
        again = await parked(servers, topic, 4)
    assert {r.headers["lintas_dlq_source_offset"] for r in again[2:]} == {"1"}
    assert await end_offset(servers.kafka_bootstrap, topic) == 2

    code, out, _ = await lintas(capsys, "dlq", "list", "--topic", topic, "--all-states", "--json")
    states = {e["id"]: e for e in json.loads(out)}
    assert states[f"{dlq}:0:{second.offset}"]["handled"]["with"] == f"{dlq}:0:{first.offset}"
    assert [e["state"] for e in states.values()] == ["replayed", "replayed", "pending", "pending"]


async def test_the_installed_command_lists_as_json_and_reports_a_missing_entry(
    servers: Servers, cli_env: dict[str, str]
) -> None:
    topic = await private_topic(servers.kafka_bootstrap)
    await produce_raw(
        servers.kafka_bootstrap,
        dead_letter_topic(topic),
        b"{}",
        key=b"k",
        headers={"lintas_dlq_reason": "malformed: test", "lintas_dlq_source_topic": topic},
    )
    command = Path(sys.executable).parent / "lintas"
    assert command.exists(), "run `make install`: the `lintas` script is missing"
    env = {**os.environ, **cli_env}

    async def run(*argv: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            str(command),
            *argv,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        return int(process.returncode or 0), out.decode(), err.decode()

    code, out, _ = await run("dlq", "--help")
    assert code == 0
    for command_name in ("list", "show", "replay", "discard"):
        assert command_name in out
    code, out, _ = await run("dlq", "list", "--topic", topic, "--json")
    assert code == 0
    [entry] = json.loads(out)
    assert entry["id"] == f"{dead_letter_topic(topic)}:0:0"
    assert entry["reason"] == "malformed: test"
    assert entry["source"] is None  # no partition or offset recorded
    code, _, err = await run("dlq", "show", f"{dead_letter_topic(topic)}:0:7")
    assert code == 1
    assert "no dead letter at offset 7" in err
    code, _, err = await run("dlq", "discard", "--all", "--topic", topic, "--reason", " ")
    assert code == 1
    assert "a discard needs a reason" in err

    # TOPIC OFFSET names an entry only when one partition has that offset.
    wide = await private_topic(servers.kafka_bootstrap, partitions=2)
    producer = AIOKafkaProducer(
        bootstrap_servers=servers.kafka_bootstrap, **client_auth().client_options()
    )
    await producer.start()
    try:
        for partition in (0, 1):
            await producer.send_and_wait(dead_letter_topic(wide), b"{}", partition=partition)
    finally:
        await producer.stop()
    code, _, err = await run("dlq", "show", wide, "0")
    assert code == 1
    assert f"offset 0 is in several partitions: {wide}.dlq:0:0, {wide}.dlq:1:0" in err
    code, out, _ = await run("dlq", "show", f"{wide}:1:0", "--json")
    assert (code, json.loads(out)["id"]) == (0, f"{wide}.dlq:1:0")


async def test_a_truncated_entry_is_listed_shown_and_never_replayed(
    servers: Servers, cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    topic = await private_topic(servers.kafka_bootstrap)
    dlq = dead_letter_topic(topic)
    big_case, small_case = f"case-{uuid.uuid4()}", f"case-{uuid.uuid4()}"
    big, small = case_submitted(big_case), case_submitted(small_case)
    handler = FixableHandler({big_case, small_case})
    big_record = to_kafka_record(big)
    # A valid event too large to park whole (over 900 KB), then an ordinary one: both
    # rejected by their handler for now.
    body = json.dumps({**json.loads(big_record.value), "padding": "x" * 950_000}).encode()

    async with consuming(servers, topic, handler, "dlq-big"):
        await produce_raw(
            servers.kafka_bootstrap, topic, body, key=big_record.key, headers=big_record.headers
        )
        small_record = to_kafka_record(small)
        await produce_raw(
            servers.kafka_bootstrap,
            topic,
            small_record.value,
            key=small_record.key,
            headers=small_record.headers,
        )
        big_entry, small_entry = await parked(servers, topic, 2)
        assert big_entry.headers["lintas_dlq_original_size"] == str(len(body))
        assert len(big_entry.value or b"") == 64 * 1024
        big_ref, small_ref = f"{dlq}:0:{big_entry.offset}", f"{dlq}:0:{small_entry.offset}"

        # list says which one is truncated, and its original size.
        code, out, _ = await lintas(capsys, "dlq", "list", "--topic", topic)
        assert code == 0
        header, big_line, small_line = out.splitlines()
        assert "SIZE" in header.split()
        assert big_line.startswith(big_ref)
        assert f"{len(body)} B, truncated" in big_line
        assert f"{len(small_entry.value or b'')} B" in small_line
        assert "truncated" not in small_line
        code, out, _ = await lintas(capsys, "dlq", "list", "--topic", topic, "--json")
        listed = {e["id"]: e for e in json.loads(out)}
        assert (listed[big_ref]["truncated"], listed[big_ref]["bytes"]) == (True, len(body))
        assert listed[small_ref]["truncated"] is False

        # show says so too, and keeps the (valid, sealed) event's payload hidden.
        code, out, _ = await lintas(capsys, "dlq", "show", big_ref)
        assert code == 0
        assert (
            f"truncated   yes, when parked: the first 65536 of its {len(body)} bytes kept; "
            "it cannot be replayed"
        ) in out
        assert f"65536 bytes kept of {len(body)}, a valid CloudEvent when parked" in out
        assert "padding" not in out
        code, out, _ = await lintas(capsys, "dlq", "show", big_ref, "--json")
        shown = json.loads(out)
        assert (shown["truncated"], shown["original_bytes"]) == (True, len(body))

        # The cause is fixed. Replaying the truncated entry alone is refused: exit 1, a
        # message naming it and its size, nothing sent, nothing in the ledger.
        handler.broken_cases.clear()
        before = await end_offset(servers.kafka_bootstrap, topic)
        code, out, _ = await lintas(capsys, "dlq", "replay", "--dry-run", big_ref)
        assert code == 1
        assert out.startswith(f"would skip   {big_ref}: not replayed: it was truncated")
        code, out, _ = await lintas(capsys, "dlq", "replay", big_ref)
        assert code == 1
        line, summary = out.splitlines()
        assert line.startswith(
            f"skipped   {big_ref}: not replayed: it was truncated when parked "
            f"(the first 65536 of its {len(body)} bytes kept) and a replay would send that "
            f"cut record to {topic}"
        )
        assert summary == "1 skipped (1 truncated)"
        assert await end_offset(servers.kafka_bootstrap, topic) == before

        # --all replays the others, skips the truncated one and says why; exit 0.
        code, out, _ = await lintas(capsys, "dlq", "replay", "--all", "--topic", topic, "--dry-run")
        assert code == 0
        assert out.splitlines()[0].startswith(f"would skip   {big_ref}: not replayed")
        assert out.splitlines()[1] == f"would replay {small_ref} to {topic}"
        code, out, _ = await lintas(capsys, "dlq", "replay", "--all", "--topic", topic, "--json")
        assert code == 0
        result = json.loads(out)
        assert result["counts"] == {"skipped": 1, "replayed": 1}
        assert result["skipped"] == {"truncated": 1}
        outcomes = {o["id"]: o for o in result["outcomes"]}
        assert (outcomes[big_ref]["action"], outcomes[big_ref]["skipped"]) == (
            "skipped",
            "truncated",
        )
        assert outcomes[small_ref]["to"] == f"{topic}:0:{before}"
        await eventually(lambda: small.id in handler.applied)
        code, out, _ = await lintas(capsys, "dlq", "replay", "--all", "--topic", topic)
        assert code == 0
        assert out.endswith("\n1 skipped (1 truncated)\n")
        assert await end_offset(servers.kafka_bootstrap, topic) == before + 1

        # It stays pending until an operator discards it; then replay says so, exit 0.
        code, out, _ = await lintas(capsys, "dlq", "list", "--topic", topic)
        assert [line.split()[:2] for line in out.splitlines()[1:]] == [[big_ref, "pending"]]
        code, out, _ = await lintas(
            capsys, "dlq", "discard", big_ref, "--reason", "too large to replay; resent"
        )
        assert (code, out.splitlines()[0]) == (0, f"discarded {big_ref}")
        code, out, _ = await lintas(capsys, "dlq", "replay", big_ref)
        assert code == 0
        assert out.startswith(f"skipped   {big_ref}: already discarded by {OPERATOR}")
    assert handler.applied == [small.id]
    assert await end_offset(servers.kafka_bootstrap, topic) == before + 1


async def topic_settings(bootstrap: str, topic: str) -> dict[str, str]:
    """The topic's configuration as the broker reports it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_auth().client_options())
    await admin.start()
    try:
        for _ in range(50):  # a topic just created is unknown (3) until its metadata spreads
            [response] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)]
            )
            [(code, _, _, name, entries)] = response.resources
            if code != 3:
                break
            await asyncio.sleep(0.2)
    finally:
        await admin.close()
    assert (code, name) == (0, topic)
    return {entry[0]: entry[1] for entry in entries}


async def test_dead_letter_topics_keep_their_records_for_the_configured_retention(
    servers: Servers,
) -> None:
    bootstrap = servers.kafka_bootstrap
    # Finite (issue #15: erasure leaves nothing linkable), 30 days by default.
    unlimited = {"retention.ms": str(30 * 86_400_000), "retention.bytes": "-1"}
    assert dict(DLQ_TOPIC_CONFIG) == unlimited

    def retention(settings: dict[str, str]) -> dict[str, str]:
        return {k: settings[k] for k in unlimited}

    # Created by ensure_topics, as the services, `lintas up` and the tests create them.
    topic = await private_topic(bootstrap)
    assert retention(await topic_settings(bootstrap, dead_letter_topic(topic))) == unlimited
    assert (await topic_settings(bootstrap, topic))["retention.ms"] != "-1"  # the broker's
    # The services' own (ensure_topics ran for the session: created, or given them).
    assert retention(await topic_settings(bootstrap, dead_letter_topic(CASES))) == unlimited
    # With a caller's settings too (the fault-injection stack sets max.message.bytes).
    wide = f"{private_topic_name()}.dlq"
    await ensure_topics(bootstrap, [wide], partitions=1, config={"max.message.bytes": "2000000"})
    settings = await topic_settings(bootstrap, wide)
    assert (retention(settings), settings["max.message.bytes"]) == (unlimited, "2000000")

    # Dead-letter topics created before (or by hand): given the retention at the next
    # ensure_topics, keeping their other settings and an operator's own retention.ms.
    # One left unlimited by an earlier version is given the finite retention too.
    old, chosen, forever = (f"{private_topic_name()}.dlq" for _ in range(3))
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_auth().client_options())
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(old, 1, 1, topic_configs={"max.message.bytes": "2000000"}),
                NewTopic(chosen, 1, 1, topic_configs={"retention.ms": "86400000"}),
                NewTopic(forever, 1, 1, topic_configs={"retention.ms": "-1"}),
            ]
        )
    finally:
        await admin.close()
    assert (await topic_settings(bootstrap, old))["retention.ms"] != unlimited["retention.ms"]
    assert await ensure_topics(bootstrap, [old, chosen, forever, topic], partitions=1) == []
    settings = await topic_settings(bootstrap, old)
    assert (retention(settings), settings["max.message.bytes"]) == (unlimited, "2000000")
    assert retention(await topic_settings(bootstrap, forever)) == unlimited
    assert retention(await topic_settings(bootstrap, chosen)) == {
        "retention.ms": "86400000",
        "retention.bytes": "-1",
    }
    assert (await topic_settings(bootstrap, topic))["retention.ms"] != "-1"  # not a DLQ
