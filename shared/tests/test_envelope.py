"""The CloudEvents binary-mode envelope."""

from __future__ import annotations

import pytest
from lintas_shared.envelope import MalformedEventError, from_kafka_record, to_kafka_record
from lintas_shared.events import CaseSubmitted, EventPayloadError, ReferralOffered, parse_payload

from tests.support.fixtures import case_submitted

pytestmark = pytest.mark.unit


def test_event_round_trips_through_binary_mode_headers() -> None:
    event = case_submitted("case-42")
    record = to_kafka_record(event)

    assert record.key == b"case-42"
    assert record.headers["ce_subject"] == "case-42"
    assert record.headers["ce_type"] == CaseSubmitted.TYPE
    assert record.headers["ce_specversion"] == "1.0"
    assert record.headers["content-type"] == "application/json"
    assert from_kafka_record(record.value, record.headers) == event


@pytest.mark.parametrize(
    ("value", "drop", "message"),
    [
        (b"not json", None, "not JSON"),
        (b"[1, 2]", None, "not a JSON object"),
        (b"{}", "ce_id", "ce_id"),
        (b"{}", "ce_type", "ce_type"),
        (b"\xff\xfe", None, "not JSON"),
    ],
)
def test_malformed_records_are_refused_with_the_reason(
    value: bytes, drop: str | None, message: str
) -> None:
    headers = dict(to_kafka_record(case_submitted()).headers)
    if drop:
        del headers[drop]
    with pytest.raises(MalformedEventError, match=message):
        from_kafka_record(value, headers)


def test_bad_time_attribute_is_malformed() -> None:
    headers = dict(to_kafka_record(case_submitted()).headers, ce_time="yesterday")
    with pytest.raises(MalformedEventError, match="time"):
        from_kafka_record(b"{}", headers)


def test_payload_of_wrong_shape_names_the_fields() -> None:
    event = case_submitted()
    broken = event.model_copy(update={"data": {**event.data, "worker": {"phone": "123"}}})
    with pytest.raises(EventPayloadError, match=r"worker\.phone"):
        parse_payload(broken, CaseSubmitted)


def test_payload_of_another_type_is_refused() -> None:
    with pytest.raises(EventPayloadError, match="expected event type"):
        parse_payload(case_submitted(), ReferralOffered)
