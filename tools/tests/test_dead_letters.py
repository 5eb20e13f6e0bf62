"""`lintas dlq`'s parsing and rendering, without servers: what is printed and what never is."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from lintas_shared.envelope import to_kafka_record
from lintas_tools.dead_letters import (
    DeadLetter,
    DeadLetterError,
    Entry,
    EntryRef,
    dead_letter_topic_of,
)
from lintas_tools.dlq_cli import clean, list_document, list_text, show_document, show_text

from tests.support.fixtures import case_submitted

pytestmark = pytest.mark.unit
PHONE = "+6281234567890"


def parked(value: bytes, headers: dict[str, str], offset: int = 4) -> DeadLetter:
    dlq = {
        "lintas_dlq_reason": "rejected: no case case-1",
        "lintas_dlq_source_topic": "lintas.cases.v1",
        "lintas_dlq_source_partition": "2",
        "lintas_dlq_source_offset": "17",
        "lintas_dlq_consumer": "referral",
        "lintas_dlq_failed_at": "2026-09-16T08:00:00.123456+00:00",
    }
    return DeadLetter(
        topic="lintas.cases.v1.dlq",
        partition=1,
        offset=offset,
        key=b"case-1",
        value=value,
        headers=tuple((k, v.encode()) for k, v in {**headers, **dlq}.items()),
    )


def valid() -> tuple[DeadLetter, str]:
    """A parked valid event, and the sealed phone its payload carries."""
    event = case_submitted("case-1", phone=PHONE)
    record = to_kafka_record(event)
    return parked(record.value, record.headers), event.data["worker"]["phone"]


def test_entry_refs_are_ids_or_topic_and_offset() -> None:
    assert EntryRef.parse(["lintas.cases.v1.dlq:2:17"]) == EntryRef("lintas.cases.v1.dlq", 17, 2)
    assert EntryRef.parse(["lintas.cases.v1:2:17"]) == EntryRef("lintas.cases.v1.dlq", 17, 2)
    assert EntryRef.parse(["lintas.cases.v1", "17"]) == EntryRef("lintas.cases.v1.dlq", 17)
    for bad in (["lintas.cases.v1"], ["x:y:z"], ["t", "offset"], ["a", "1", "2"]):
        with pytest.raises(DeadLetterError, match="not an entry"):
            EntryRef.parse(bad)
    assert dead_letter_topic_of("lintas.cases.v1.dlq") == "lintas.cases.v1.dlq"


def test_a_dead_letter_knows_where_it_came_from_and_its_original_headers() -> None:
    letter, _ = valid()
    assert letter.id == "lintas.cases.v1.dlq:1:4"
    assert letter.source_id == "lintas.cases.v1:2:17"
    assert letter.consumer == "referral"
    assert letter.event_type == "org.lintas.case.submitted"
    assert not any(k.startswith("lintas_dlq_") for k, _ in letter.original_headers)
    assert {k for k, _ in letter.original_headers} >= {"ce_id", "ce_type", "ce_subject"}
    assert not isinstance(letter.parse(), Exception)


def test_list_is_one_lean_line_per_entry_without_payloads() -> None:
    letter, sealed_phone = valid()
    handled = {
        "state": "replayed",
        "by": "ops",
        "at": datetime(2026, 9, 17, tzinfo=UTC),
        "to": "lintas.cases.v1:2:40",
    }
    entries = [Entry(letter), Entry(parked(b"\x00junk", {}, offset=5), handled)]
    text = list_text(entries)
    header, first, second = text.splitlines()
    assert header.split()[:2] == ["ID", "STATE"]
    assert first.split()[:6] == [
        "lintas.cases.v1.dlq:1:4",
        "pending",
        "2026-09-16T08:00:00+00:00",
        "referral",
        "lintas.cases.v1:2:17",
        "org.lintas.case.submitted",
    ]
    assert first.endswith("rejected: no case case-1")
    assert second.split()[:2] == ["lintas.cases.v1.dlq:1:5", "replayed"]
    documents = json.loads(json.dumps([list_document(e) for e in entries]))
    assert documents[1]["handled"] == {
        "state": "replayed",
        "by": "ops",
        "at": "2026-09-17T00:00:00+00:00",
        "to": "lintas.cases.v1:2:40",
    }
    for output in (text, json.dumps(documents)):
        assert sealed_phone not in output
        assert "junk" not in output
        assert "payload" not in output


def test_show_keeps_a_valid_events_payload_to_itself() -> None:
    letter, sealed_phone = valid()
    text = show_text(Entry(letter))
    assert f"{len(letter.value or b'')} bytes, a valid CloudEvent" in text
    assert "lintas_dlq_reason" in text
    assert "source      lintas.cases.v1 partition 2 offset 17" in text
    assert sealed_phone not in text
    assert "payload_excerpt" not in show_document(Entry(letter))


def test_show_prints_a_malformed_payload_truncated_and_masked() -> None:
    value = (f'{{"phone": "{PHONE}", "x": "' + "a" * 2000 + '"').encode()
    letter = parked(value, {"ce_id": "e-1"})
    document = show_document(Entry(letter))
    assert document["valid_cloudevent"] is False
    assert document["malformed"].startswith("missing CloudEvents headers")
    assert document["payload_truncated"] is True
    assert document["payload_excerpt"].startswith('{"phone": "[redacted]", "x": "aaa')
    assert len(document["payload_excerpt"]) < 600
    text = show_text(Entry(letter))
    assert f"first 512 of {len(value)} bytes" in text
    assert PHONE not in text


def test_hostile_text_cannot_break_a_line_or_drive_the_terminal() -> None:
    assert clean("a\nb\x1b[2Jc\td") == "a\\nb\\x1b[2Jc\\td"
    assert clean(f"call {PHONE} now") == "call [redacted] now"
    assert clean("x" * 50, 10) == "x" * 9 + "…"
    letter = parked(b"{}", {"ce_type": "evil\ntype\r"})
    [_, line] = list_text([Entry(letter)]).splitlines()
    assert "evil\\ntype\\r" in line
