"""The CloudEvents 1.0 envelope in Kafka binary mode.

Attributes travel in `ce_*` headers, the data is the JSON record value, and the record
key is the case id, so that all events of one case land on one partition, in order.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lintas_shared.tracing import (
    CE_TRACEPARENT_HEADER,
    TRACEPARENT_HEADER,
    current_traceparent,
    valid_traceparent,
)

SPEC_VERSION: Final = "1.0"
JSON_CONTENT_TYPE: Final = "application/json"
_REQUIRED_HEADERS: Final = (
    "ce_id",
    "ce_source",
    "ce_type",
    "ce_specversion",
    "ce_time",
    "ce_subject",
)


class MalformedEventError(ValueError):
    """A Kafka record that is not a valid Lintas CloudEvent. It can never succeed on retry."""


class CloudEvent(BaseModel):
    """One event: a fact that happened, with its CloudEvents attributes and JSON data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str = Field(min_length=1, description="The case id; also the Kafka record key.")
    time: datetime
    specversion: str = SPEC_VERSION
    datacontenttype: str = JSON_CONTENT_TYPE
    traceparent: str | None = Field(
        default=None,
        description="W3C trace context captured when the event was created (the CloudEvents "
        "distributed tracing extension); it rides in the outbox until the event is published.",
    )
    data: dict[str, Any]

    @property
    def dedupe_key(self) -> str:
        """What identifies this event for idempotent consumers: (ce_source, ce_id)."""
        return f"{self.source}#{self.id}"


def new_event(
    *,
    source: str,
    type_: str,
    subject: str,
    data: dict[str, Any],
    traceparent: str | None = None,
    now: datetime | None = None,
    event_id: str | None = None,
) -> CloudEvent:
    """Build a new event with a fresh id (or `event_id`), capturing the trace context.

    The active span (the HTTP request, or the consumer handling the causing event) is
    the event's parent in the trace. `traceparent` is the fallback when no span is
    active, e.g. the causing event's own context passed along by a handler. `event_id`
    gives an event that states a one-off fact (this SMS was sent) the same id however
    often it is recorded, so consumers' dedup by id absorbs a second record.
    """
    return CloudEvent(
        id=event_id or str(uuid.uuid4()),
        source=source,
        type=type_,
        subject=subject,
        time=now or datetime.now(UTC),
        data=data,
        traceparent=current_traceparent() or valid_traceparent(traceparent),
    )


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """An event laid out as a Kafka record in binary mode."""

    key: bytes
    value: bytes
    headers: dict[str, str]


def to_kafka_record(event: CloudEvent) -> KafkaRecord:
    """Lay an event out as a binary-mode Kafka record.

    The event's trace context goes out twice: as the CloudEvents extension attribute
    (`ce_traceparent`, as captured) and as the W3C `traceparent` header, which the
    publisher replaces with its own span when it has one.
    """
    headers = {
        "ce_id": event.id,
        "ce_source": event.source,
        "ce_type": event.type,
        "ce_specversion": event.specversion,
        "ce_time": event.time.isoformat(),
        "ce_subject": event.subject,
        "content-type": event.datacontenttype,
    }
    if event.traceparent:
        headers[CE_TRACEPARENT_HEADER] = event.traceparent
        headers[TRACEPARENT_HEADER] = event.traceparent
    value = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False).encode()
    return KafkaRecord(key=event.subject.encode(), value=value, headers=headers)


def from_kafka_record(value: bytes | None, headers: dict[str, str]) -> CloudEvent:
    """Read an event back from a binary-mode Kafka record.

    Raises MalformedEventError naming what is wrong: a missing header, a body that is
    not a JSON object, or an attribute of the wrong shape.
    """
    missing = [h for h in _REQUIRED_HEADERS if not headers.get(h)]
    if missing:
        raise MalformedEventError(f"missing CloudEvents headers: {', '.join(missing)}")
    if headers["ce_specversion"] != SPEC_VERSION:
        raise MalformedEventError(f"unsupported ce_specversion {headers['ce_specversion']!r}")
    content_type = headers.get("content-type", JSON_CONTENT_TYPE)
    if not content_type.startswith(JSON_CONTENT_TYPE):
        raise MalformedEventError(f"unsupported content-type {content_type!r}")
    try:
        data = json.loads(value or b"")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEventError(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MalformedEventError("body is not a JSON object")
    try:
        return CloudEvent(
            id=headers["ce_id"],
            source=headers["ce_source"],
            type=headers["ce_type"],
            subject=headers["ce_subject"],
            time=headers["ce_time"],  # pydantic parses ISO 8601
            specversion=headers["ce_specversion"],
            datacontenttype=content_type,
            # A broken trace context never costs an event: it is dropped, not refused.
            traceparent=valid_traceparent(headers.get(CE_TRACEPARENT_HEADER))
            or valid_traceparent(headers.get(TRACEPARENT_HEADER)),
            data=data,
        )
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
        raise MalformedEventError(f"invalid CloudEvents attributes: {fields}") from None
