"""`lintas dlq`'s parsing and rendering, without servers: what is printed and what never is."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from lintas_shared.envelope import to_kafka_record
from lintas_tools.dead_letters import (
    Action,
    DeadLetter,
    DeadLetterError,
    DeadLetterOperations,
    Entry,
    EntryRef,
    Ledger,
    SkipReason,
    dead_letter_topic_of,
)
from lintas_tools.dlq_cli import (
    clean,
    list_document,
    list_text,
    outcome_document,
    outcome_text,
    show_document,
    show_text,
    summary_text,
)

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


def truncated(reason: str, original: bytes, headers: dict[str, str]) -> DeadLetter:
    """`original` parked as the consumer parks a record too large to park whole."""
    letter = parked(original[: 64 * 1024], {**headers, "lintas_dlq_original_size": "2000000"})
    dlq = dict(letter.headers)
    dlq["lintas_dlq_reason"] = reason.encode()
    return DeadLetter(
        letter.topic, letter.partition, letter.offset, letter.key, letter.value, tuple(dlq.items())
    )


def big_event() -> tuple[DeadLetter, str]:
    """A valid event of 2 MB parked (rejected by its handler) as its first 64 KiB."""
    event = case_submitted("case-1", phone=PHONE)
    record = to_kafka_record(event)
    body = json.dumps({**json.loads(record.value), "padding": "x" * 2_000_000}).encode()
    letter = truncated("rejected: no case case-1", body, record.headers)
    return letter, event.data["worker"]["phone"]


def test_a_truncated_dead_letter_knows_its_original_size() -> None:
    letter, _ = big_event()
    assert letter.truncated
    assert letter.original_size == 2_000_000
    assert letter.payload_size == 64 * 1024
    assert letter.describe_truncation() == "the first 65536 of its 2000000 bytes"
    whole, _ = valid()
    assert not whole.truncated
    assert whole.original_size is None
    for hostile in ("lots", "-5", ""):
        odd = parked(b"{}", {"lintas_dlq_original_size": hostile})
        assert odd.truncated
        assert odd.original_size is None
        assert "its size was not recorded" in odd.describe_truncation()


def test_list_says_which_entries_are_truncated_and_their_original_size() -> None:
    letter, sealed_phone = big_event()
    whole, _ = valid()
    text = list_text([Entry(whole), Entry(letter)])
    header, first, second = text.splitlines()
    assert "SIZE" in header.split()
    assert f"{whole.payload_size} B  " in first
    assert "truncated" not in first
    assert "2000000 B, truncated" in second
    documents = [list_document(Entry(e)) for e in (whole, letter)]
    assert (documents[0]["truncated"], documents[0]["bytes"]) == (False, whole.payload_size)
    assert (documents[1]["truncated"], documents[1]["bytes"]) == (True, 2_000_000)
    assert sealed_phone not in text + json.dumps(documents)


def test_show_says_a_truncated_entry_cannot_be_replayed_and_keeps_its_payload_hidden() -> None:
    letter, sealed_phone = big_event()
    text = show_text(Entry(letter))
    assert (
        "truncated   yes, when parked: the first 65536 of its 2000000 bytes kept; "
        "it cannot be replayed" in text
    )
    # The consumer found the whole record a valid CloudEvent (it was rejected, not
    # malformed): the cut copy, which does not parse, is not shown as if it were junk.
    assert "payload     65536 bytes kept of 2000000, a valid CloudEvent when parked" in text
    assert "padding" not in text
    assert sealed_phone not in text
    document = show_document(Entry(letter))
    assert document["valid_cloudevent"] is True
    assert "payload_excerpt" not in document
    assert (document["truncated"], document["original_bytes"]) == (True, 2_000_000)
    assert document["payload_bytes"] == 64 * 1024

    # A record that was not a CloudEvent is shown (masked) with the consumer's verdict.
    junk = truncated(
        "malformed: body is not JSON: Expecting value",
        f'{{"phone": "{PHONE}", "x": "'.encode() + b"a" * 2_000_000,
        {"ce_id": "e-1"},
    )
    text = show_text(Entry(junk))
    assert "not a valid CloudEvent when parked" in text
    assert "malformed: body is not JSON: Expecting value" in text
    assert "first 512 of 65536 bytes" in text
    assert PHONE not in text


class Untouched:
    """A ledger collection, producer or source that fails the test if it is used."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} used")


async def test_replay_refuses_a_truncated_entry_before_claiming_or_producing_it() -> None:
    letter, _ = big_event()
    ops = DeadLetterOperations(
        cast(Any, Untouched()), cast(Any, Untouched()), Ledger(cast(Any, Untouched())), "ops"
    )
    [outcome] = await ops.replay([Entry(letter)], [Entry(letter)])
    assert (outcome.action, outcome.skipped) == (Action.SKIPPED, SkipReason.TRUNCATED)
    line = outcome_text(outcome)
    assert line.startswith(f"skipped   {letter.id}: not replayed: it was truncated when parked")
    assert "the first 65536 of its 2000000 bytes kept" in line
    assert "send that cut record to lintas.cases.v1" in line
    assert "the whole record was at lintas.cases.v1:2:17" in line
    assert outcome_document(outcome)["skipped"] == "truncated"

    # Already discarded: that is the answer, not the truncation.
    handled = {"state": "discarded", "by": "ops", "at": datetime(2026, 9, 17, tzinfo=UTC)}
    [outcome] = await ops.replay([Entry(letter, handled)], [])
    assert (outcome.skipped, outcome.detail) == (
        SkipReason.HANDLED,
        "already discarded by ops at 2026-09-17T00:00:00+00:00",
    )


def test_the_summary_counts_skips_with_their_reasons() -> None:
    def summary(actions: Sequence[str], skipped: Sequence[str]) -> str:
        return summary_text(Counter(actions), Counter(skipped), "replay")

    assert (
        summary(
            ["replayed", "skipped", "skipped", "skipped"],
            ["truncated", "already handled", "truncated"],
        )
        == "1 replayed, 3 skipped (1 already handled, 2 truncated)\n"
    )
    assert summary(["failed"], []) == "1 failed\n"
    assert summary([], []) == "nothing to replay\n"
