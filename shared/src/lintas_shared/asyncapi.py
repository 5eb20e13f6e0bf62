"""AsyncAPI 3.0 documents of Lintas's events, built from the event catalogue.

Each service serves its own document at `/v1/asyncapi.json`: what it sends (every event
type it publishes, see `SENDS`), what it receives (its actual subscriptions, recorded by
`lintas_shared.consumer.subscribe`) and the dead letters it parks. The combined document
of the whole system is committed as `docs/asyncapi.json`, with a page a person can read
as `docs/asyncapi.html`; regenerate both with

    uv run python -m lintas_shared.asyncapi --write docs

(`--combined` prints the combined document; `--service NAME` one service's.)

Every message carries the JSON Schema of its payload, generated from the pydantic models
in `lintas_shared.events`, the CloudEvents attributes as Kafka headers, the record key
and an example.
"""

from __future__ import annotations

import argparse
import copy
import functools
import html
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from pydantic.json_schema import models_json_schema

from lintas_shared import consumer as _consumer
from lintas_shared import events as ev
from lintas_shared import topics
from lintas_shared.consumer import Subscription

ASYNCAPI_VERSION: Final = "3.0.0"
KAFKA_BINDING_VERSION: Final = "0.5.0"
DOCS_VERSION: Final = "0.1.0"
_SCHEMAS: Final = "#/components/schemas/"

SOURCES: Final[Mapping[str, str]] = {
    "intake": "/lintas/intake",
    "referral": "/lintas/referral",
    "notify": "/lintas/notify",
}

#: Which service publishes which event types (the catalogue's producers).
SENDS: Final[Mapping[str, tuple[type[ev.EventPayload], ...]]] = {
    "intake": (
        ev.CaseSubmitted,
        ev.CaseDetailsCorrected,
        ev.ConsentRecorded,
        ev.ConsentWithdrawn,
        ev.SmsPreferenceChanged,
        ev.CaseClosed,
        ev.CaseErased,
    ),
    "referral": (
        ev.ReferralOffered,
        ev.CaseRoutingBlocked,
        ev.ReferralAccepted,
        ev.ReferralDeclined,
        ev.ReferralExpired,
        ev.ReferralWithdrawn,
        ev.ReferralProgressed,
        ev.ReferralClosed,
        ev.DeadlineApproaching,
    ),
    "notify": (ev.SmsPreferenceTexted, ev.SmsSent, ev.SmsDeliveryReported),
}


def _types(*classes: type[ev.EventPayload]) -> tuple[str, ...]:
    return tuple(c.TYPE for c in classes)


_REFERRAL_NEWS = _types(
    ev.ReferralOffered,
    ev.CaseRoutingBlocked,
    ev.ReferralAccepted,
    ev.ReferralDeclined,
    ev.ReferralExpired,
    ev.ReferralWithdrawn,
    ev.ReferralProgressed,
    ev.ReferralClosed,
    ev.DeadlineApproaching,
)

#: What each service subscribes to with its default consumer groups. The services'
#: documents are built from their actual subscriptions; a test checks they equal these.
RECEIVES: Final[Mapping[str, tuple[Subscription, ...]]] = {
    "intake": (
        Subscription("intake-news", topics.REFERRALS, "lintas-intake", _REFERRAL_NEWS),
        Subscription(
            "intake-news",
            topics.NOTIFICATIONS,
            "lintas-intake",
            _types(ev.SmsSent, ev.SmsDeliveryReported, ev.SmsPreferenceTexted),
        ),
        # Notify's announcements from before it had its own topic for them.
        Subscription(
            "intake-cases", topics.CASES, "lintas-intake.cases", _types(ev.SmsPreferenceChanged)
        ),
    ),
    "referral": (
        Subscription(
            "referral",
            topics.CASES,
            "lintas-referral",
            _types(
                ev.CaseSubmitted,
                ev.CaseDetailsCorrected,
                ev.ConsentRecorded,
                ev.ConsentWithdrawn,
                ev.CaseClosed,
                ev.CaseErased,
            ),
        ),
        Subscription(
            "referral-webhooks",
            topics.REFERRALS,
            "lintas-referral-webhooks",
            _types(
                ev.ReferralOffered,
                ev.ReferralAccepted,
                ev.ReferralDeclined,
                ev.ReferralExpired,
                ev.ReferralWithdrawn,
                ev.ReferralProgressed,
                ev.ReferralClosed,
                ev.DeadlineApproaching,
            ),
        ),
    ),
    "notify": (
        Subscription(
            "notify",
            topics.CASES,
            "lintas-notify",
            _types(
                ev.CaseSubmitted,
                ev.CaseDetailsCorrected,
                ev.SmsPreferenceChanged,
                ev.CaseClosed,
                ev.CaseErased,
            ),
        ),
        Subscription(
            "notify",
            topics.REFERRALS,
            "lintas-notify.referrals",
            _types(
                ev.ReferralOffered,
                ev.ReferralAccepted,
                ev.ReferralProgressed,
                ev.DeadlineApproaching,
                ev.ReferralClosed,
            ),
        ),
    ),
}

_TOPIC_DESCRIPTIONS: Final[Mapping[str, str]] = {
    topics.CASES: "Cases as intake records them: submitted, corrected, consent, SMS "
    "preference, closed, erased. Written by intake (and by notify for a preference a "
    "worker texted).",
    topics.REFERRALS: "Routing and the legal partners' work on each referral. Written by "
    "referral. Legal partners consume it: `referral offered` carries the handoff, sealed "
    "for the partner it is offered to.",
    topics.NOTIFICATIONS: "SMS sent to workers and their delivery reports. Written by notify.",
}

_OVERVIEW: Final = """\
Lintas's events travel on Kafka as CloudEvents 1.0 in binary mode: the attributes are
Kafka headers (`ce_id`, `ce_source`, `ce_type`, `ce_specversion`, `ce_time`,
`ce_subject`, `content-type`, and the W3C `traceparent`, also as `ce_traceparent`), the
record value is the event's data as JSON, and the record key is the case id (equal to
`ce_subject`), so all events of one case are on one partition, in order. Delivery is at
least once: deduplicate by (`ce_source`, `ce_id`).

**Reading a topic.** Ignore fields you do not know and event types you do not handle:
producers add optional fields and new types without changing the topic's version (a
change an existing consumer could not read gets a new topic, e.g. `lintas.cases.v2`).
Lintas's own consumers do exactly that: an unknown type is acknowledged and skipped,
an unknown field dropped; neither is parked as a dead letter.

**Sealed fields.** Personal data travels only as `enc:v1:` tokens: base64url of a
12-byte nonce followed by the AES-256-GCM ciphertext and tag, with the associated data
`<case_id>` + U+001F + the field's name. Fields of the cases topic are sealed with the
case's own key, which only Lintas's services hold. The one sealed field a legal partner
opens is `content` of `org.lintas.referral.offered`: the partner calls
`GET /v1/referrals/{referral_id}/content-key` on the referral API with its API key and
receives `{"key": <base64url AES-256-GCM key>, "associated_data":
"<case_id>\\u001freferral.content"}`; the plaintext is the handoff's shared fields as
JSON. Once the worker's data is erased (`org.lintas.case.erased`) every key is
destroyed, the content is unreadable in every copy, and the endpoint answers 410.

**Dead letters.** A record a consumer can never process (not a CloudEvent, an invalid
payload, a rejected event, or failing after its retries) is copied as it was to
`<topic>.dlq` with `lintas_dlq_*` headers saying why, where from and by whom."""

_SEALED_NOTE: Final = (
    "Sealed with the case's own key (see the document's description): {fields}. Only "
    "Lintas's services open them; after the case is erased nobody can."
)
_CONTENT_NOTE: Final = (
    "`content` is the handoff's shared fields as JSON, sealed for this referral's "
    "partner only. The partner opens it with the key from "
    "`GET /v1/referrals/{referral_id}/content-key` (referral API, the partner's API key): "
    'the answer is `{"key": <base64url AES-256-GCM key>, "associated_data": '
    '"<case_id>\\u001freferral.content"}`; the token is `enc:v1:` + base64url(12-byte '
    "nonce + ciphertext + tag). After erasure the endpoint answers 410 and no copy opens."
)
_REFERRAL_NOTE: Final = (
    "Carries ids, forum and deadline facts only, never personal data; the partner reads "
    "the case through the referral API."
)

_HEADER_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "ce_id": "CloudEvents id; (ce_source, ce_id) identifies the event for deduplication",
    "ce_source": "The producing service",
    "ce_type": "CloudEvents type: which message this is",
    "ce_specversion": "CloudEvents version",
    "ce_time": "When it happened (ISO 8601)",
    "ce_subject": "The case id; also the record key",
    "content-type": "The value's media type",
    "traceparent": "W3C trace context of the publishing span",
    "ce_traceparent": "W3C trace context the event was created in (CloudEvents "
    "distributed tracing extension)",
}

_DLQ_HEADERS: Final[Mapping[str, str]] = {
    _consumer.DLQ_REASON: "Why it was parked: 'malformed: …', 'rejected: …' or "
    "'failed after N attempts: …'",
    _consumer.DLQ_SOURCE_TOPIC: "The topic the record was read from",
    _consumer.DLQ_SOURCE_PARTITION: "Its partition there",
    _consumer.DLQ_SOURCE_OFFSET: "Its offset there",
    _consumer.DLQ_CONSUMER: "The consumer that parked it",
    _consumer.DLQ_FAILED_AT: "When it was parked (ISO 8601)",
    _consumer.DLQ_ORIGINAL_SIZE: "Set when the value is a truncated copy: the original "
    "size in bytes",
}

_EXAMPLE_CASE_ID: Final = "7d4c0f7e-4b8e-4f0e-9a57-2f1b9c3d5e61"
_EXAMPLE_STRINGS: Final[Mapping[str, str]] = {
    "case_id": _EXAMPLE_CASE_ID,
    "referral_id": "0b8e5a3c-91d2-4c7a-8f16-5e2d4a9b7c10",
    "organisation_id": "org-desbumi-wonosobo",
    "partner_organisation_id": "org-hk-labour-law-clinic",
    "consent_id": "c5a1e9d2-3f47-4b8a-a6c2-9d0e1f2a3b4c",
    "message_id": "9e2d7c41-6a5b-4f38-b1c0-d2e3f4a5b6c7",
    "by_person_id": "person-3f9a",
    "reference": "LB-7K3Q9",
    "country": "HK",
    "current_country": "HK",
    "preferred_language": "id",
    "language": "id",
    "currency": "HKD",
    "value": "12000.00",
    "time_zone": "Asia/Hong_Kong",
    "phone_hash": "5f0c" * 16,
    "template": "referral_offered",
    "code": "HK-LT",
    "forum_code": "HK-LT",
    "name": "Labour Tribunal",
    "basis": "Employment Ordinance (Cap. 57), s. 25: claims within 12 months",
    "reason": "Outside our practice areas",
}
_EXAMPLE_TIME: Final = "2026-03-02T09:15:00Z"
_EXAMPLE_DATE: Final = "2026-09-30"
_SEALED_EXAMPLE: Final = "enc:v1:q1Zbm9uY2UtMTJieXRlc2NpcGhlcnRleHQtYW5kLXRhZw=="


# --- schemas ------------------------------------------------------------------------------


@functools.cache
def payload_schemas() -> Mapping[str, Any]:
    """Every payload's JSON Schema and every part's, keyed by model name, with references
    in the form `#/components/schemas/<name>` (shared: never change it)."""
    _, top = models_json_schema(
        [(cls, "validation") for cls in ev.EVENT_TYPES.values()],
        ref_template=_SCHEMAS + "{model}",
    )
    schemas: dict[str, Any] = top["$defs"]
    return schemas


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        schema = defs[str(schema["$ref"]).rsplit("/", 1)[-1]]
    return schema


def sealed_fields(
    schema: Mapping[str, Any], defs: Mapping[str, Any], prefix: str = ""
) -> list[str]:
    """The paths of the `enc:v1:` fields in `schema` ('worker.phone', 'claims[].description')."""
    schema = _resolve(schema, defs)
    if str(schema.get("pattern", "")).startswith("^enc:v1:"):
        return [prefix]
    found: list[str] = []
    for variant in schema.get("anyOf", ()):
        found += [p for p in sealed_fields(variant, defs, prefix) if p not in found]
    if "items" in schema:
        found += sealed_fields(schema["items"], defs, prefix + "[]")
    for name, sub in schema.get("properties", {}).items():
        found += sealed_fields(sub, defs, f"{prefix}.{name}" if prefix else name)
    return found


def example_value(schema: Mapping[str, Any], defs: Mapping[str, Any], name: str = "") -> Any:
    """A plausible value of `schema` (a property called `name`), for the documents."""
    schema = _resolve(schema, defs)
    if "anyOf" in schema:
        variants = [v for v in schema["anyOf"] if v.get("type") != "null"]
        return example_value(variants[0], defs, name)
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {prop: example_value(sub, defs, prop) for prop, sub in schema["properties"].items()}
    if kind == "array":
        item = example_value(schema.get("items", {}), defs, name)
        return [item] if schema.get("maxItems", 1) else []
    if kind == "string":
        if str(schema.get("pattern", "")).startswith("^enc:v1:"):
            return _SEALED_EXAMPLE
        if name in _EXAMPLE_STRINGS:
            return _EXAMPLE_STRINGS[name]
        if "enum" in schema:
            return schema["enum"][0]
        if schema.get("format") == "date-time":
            return _EXAMPLE_TIME
        if schema.get("format") == "date":
            return _EXAMPLE_DATE
        return "example"
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "integer":
        return {"days_before": 7}.get(name, max(1, int(schema.get("minimum", 1))))
    if kind == "boolean":
        return name in {"verified", "filed_at_forum"}
    return None


def example_payload(cls: type[ev.EventPayload], defs: Mapping[str, Any] | None = None) -> Any:
    """An example of `cls`'s data (it validates as `cls`; a test checks)."""
    defs = payload_schemas() if defs is None else defs
    return example_value({"$ref": _SCHEMAS + cls.__name__}, defs)


# --- the document ---------------------------------------------------------------------------


def _title(cls: type[ev.EventPayload]) -> str:
    words = cls.TYPE.rsplit(".", 2)
    return f"{words[-2]} {words[-1]}".replace("_", " ").capitalize()


def _docstring(cls: type[Any]) -> str:
    return " ".join((cls.__doc__ or "").split())


def _message_description(cls: type[ev.EventPayload], defs: Mapping[str, Any]) -> str:
    parts = [_docstring(cls)]
    sealed = sealed_fields({"$ref": _SCHEMAS + cls.__name__}, defs)
    if cls is ev.ReferralOffered:
        parts.append(_CONTENT_NOTE)
    elif sealed:
        parts.append(_SEALED_NOTE.format(fields=", ".join(f"`{f}`" for f in sealed)))
    elif cls.TOPIC == topics.REFERRALS:
        parts.append(_REFERRAL_NOTE)
    parts.append(
        "Consumers ignore fields they do not know: optional fields may be added without "
        "a new topic version."
    )
    return "\n\n".join(parts)


def _event_headers(cls: type[ev.EventPayload]) -> dict[str, Any]:
    string = {"type": "string"}
    properties: dict[str, Any] = {
        "ce_id": {**string, "minLength": 1},
        "ce_source": {**string, "enum": sorted(s for s, c in SENDS.items() if cls in c)},
        "ce_type": {**string, "const": cls.TYPE},
        "ce_specversion": {**string, "const": "1.0"},
        "ce_time": {**string, "format": "date-time"},
        "ce_subject": {**string, "minLength": 1},
        "content-type": {**string, "const": "application/json"},
        "traceparent": {**string, "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"},
        "ce_traceparent": {**string, "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"},
    }
    properties["ce_source"]["enum"] = [SOURCES[s] for s in properties["ce_source"]["enum"]]
    for header, schema in properties.items():
        schema["description"] = _HEADER_DESCRIPTIONS[header]
    return {
        "type": "object",
        "required": [
            "ce_id",
            "ce_source",
            "ce_type",
            "ce_specversion",
            "ce_time",
            "ce_subject",
            "content-type",
        ],
        "properties": properties,
    }


def _message(cls: type[ev.EventPayload], defs: Mapping[str, Any]) -> dict[str, Any]:
    source = SOURCES[next(s for s, c in SENDS.items() if cls in c)]
    headers_example = {
        "ce_id": "3b241101-e2bb-4255-8caf-4136c566a962",
        "ce_source": source,
        "ce_type": cls.TYPE,
        "ce_specversion": "1.0",
        "ce_time": _EXAMPLE_TIME,
        "ce_subject": _EXAMPLE_CASE_ID,
        "content-type": "application/json",
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    }
    return {
        "name": cls.TYPE,
        "title": _title(cls),
        "summary": _docstring(cls).split(". ")[0].rstrip("."),
        "description": _message_description(cls, defs),
        "contentType": "application/json",
        "headers": _event_headers(cls),
        "payload": {"$ref": _SCHEMAS + cls.__name__},
        "correlationId": {
            "description": "The CloudEvents id",
            "location": "$message.header#/ce_id",
        },
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "The case id (equal to ce_subject)"},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
        "examples": [
            {
                "name": cls.__name__,
                "summary": f"A {_title(cls).lower()} event",
                "headers": headers_example,
                "payload": example_payload(cls, defs),
            }
        ],
    }


def _dead_letter_message(topic: str) -> dict[str, Any]:
    properties: dict[str, Any] = {
        name: {"type": "string", "description": text} for name, text in _DLQ_HEADERS.items()
    }
    properties[_consumer.DLQ_SOURCE_TOPIC]["const"] = topic
    for name, text in _HEADER_DESCRIPTIONS.items():
        properties[name] = {"type": "string", "description": f"As on the original: {text}"}
    return {
        "name": "dead-letter",
        "title": f"Dead letter from {topic}",
        "summary": "A record of the topic that a consumer could never process, as it was",
        "description": "The original key, value and headers, unchanged, plus the "
        "`lintas_dlq_*` headers. A value larger than "
        f"{_consumer.DLQ_MAX_VALUE_BYTES} bytes is cut to its first "
        f"{_consumer.DLQ_KEPT_BYTES} bytes (`{_consumer.DLQ_ORIGINAL_SIZE}` gives the size). "
        "Operators list, replay and drop dead letters with `lintas dlq`.",
        "headers": {
            "type": "object",
            "required": [
                _consumer.DLQ_REASON,
                _consumer.DLQ_SOURCE_TOPIC,
                _consumer.DLQ_SOURCE_PARTITION,
                _consumer.DLQ_SOURCE_OFFSET,
                _consumer.DLQ_CONSUMER,
                _consumer.DLQ_FAILED_AT,
            ],
            "properties": properties,
        },
        "payload": {
            "description": "The original record value, as it was: usually one of the "
            f"topic's events (see {topic}), or the bytes of a malformed record."
        },
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "The original record key"},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _topic_types(topic: str) -> list[type[ev.EventPayload]]:
    return [cls for cls in ev.EVENT_TYPES.values() if topic == cls.TOPIC]


def _channel(topic: str) -> dict[str, Any]:
    return {
        "address": topic,
        "title": topic,
        "description": _TOPIC_DESCRIPTIONS[topic]
        + " The record key is the case id. Dead letters go to "
        f"`{topics.dead_letter_topic(topic)}`.",
        "messages": {
            cls.__name__: {"$ref": f"#/components/messages/{cls.__name__}"}
            for cls in _topic_types(topic)
        },
        "bindings": {"kafka": {"topic": topic, "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def _dlq_channel(topic: str) -> dict[str, Any]:
    dlq = topics.dead_letter_topic(topic)
    return {
        "address": dlq,
        "title": dlq,
        "description": f"Dead letters of {topic}: kept until an operator replays or drops "
        f"them, for at most {topics.DLQ_RETENTION_DAYS_DEFAULT} days by default "
        "(`LINTAS_DLQ_RETENTION_DAYS`).",
        "messages": {"DeadLetter": {"$ref": f"#/components/messages/{_dlq_id(topic)}"}},
        "bindings": {
            "kafka": {
                "topic": dlq,
                "topicConfiguration": {
                    key: int(value)
                    for key, value in topics.dead_letter_config(
                        topics.DLQ_RETENTION_DAYS_DEFAULT
                    ).items()
                },
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _dlq_id(topic: str) -> str:
    return "DeadLetter_" + topic.split(".")[1]


def document(
    services: Sequence[str],
    receives: Mapping[str, Sequence[Subscription]],
    *,
    title: str,
    description: str,
    version: str = DOCS_VERSION,
    server: str = "127.0.0.1:9092",
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of what `services` send, and receive through `receives`."""
    defs = payload_schemas()
    operations: dict[str, Any] = {}
    used_topics: set[str] = set()
    dlq_topics: set[str] = set()
    used_types: set[type[ev.EventPayload]] = set()
    for service in services:
        sent: dict[str, list[type[ev.EventPayload]]] = {}
        for cls in SENDS.get(service, ()):
            sent.setdefault(cls.TOPIC, []).append(cls)
        for topic, classes in sent.items():
            used_topics.add(topic)
            used_types.update(classes)
            operations[f"{service}.send.{topic}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{topic}"},
                "title": f"{service} publishes to {topic}",
                "summary": ", ".join(c.TYPE for c in classes),
                "messages": [
                    {"$ref": f"#/channels/{topic}/messages/{c.__name__}"} for c in classes
                ],
            }
        for sub in receives.get(service, ()):
            handled = [ev.EVENT_TYPES[t] for t in sub.event_types]
            used_topics.add(sub.topic)
            dlq_topics.add(sub.topic)
            used_types.update(handled)
            operations[f"{service}.receive.{sub.topic}.{sub.group_id}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{sub.topic}"},
                "title": f"{service} ({sub.consumer}) reads {sub.topic}",
                "summary": f"Consumer group {sub.group_id}",
                "description": "Handles "
                + ", ".join(f"`{t}`" for t in sub.event_types)
                + ". Every other type on the topic is acknowledged and skipped, and unknown "
                "fields are ignored; neither is a dead letter. A record that is not a "
                "CloudEvent, or a handled event it can never process, is parked in "
                f"`{topics.dead_letter_topic(sub.topic)}`.",
                "messages": [
                    {"$ref": f"#/channels/{sub.topic}/messages/{c.__name__}"} for c in handled
                ],
                "bindings": {
                    "kafka": {
                        "groupId": {"type": "string", "enum": [sub.group_id]},
                        "bindingVersion": KAFKA_BINDING_VERSION,
                    }
                },
            }
        for topic in sorted({s.topic for s in receives.get(service, ())}):
            dlq = topics.dead_letter_topic(topic)
            operations[f"{service}.send.{dlq}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{dlq}"},
                "title": f"{service} parks dead letters of {topic}",
                "messages": [{"$ref": f"#/channels/{dlq}/messages/DeadLetter"}],
            }
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in topics.SOURCE_TOPICS:
        if topic in used_topics:
            channels[topic] = _channel(topic)
            for cls in _topic_types(topic):
                messages[cls.__name__] = _message(cls, defs)
        if topic in dlq_topics:
            channels[topics.dead_letter_topic(topic)] = _dlq_channel(topic)
            messages[_dlq_id(topic)] = _dead_letter_message(topic)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title,
            "version": version,
            "description": f"{description}\n\n{_OVERVIEW}",
            "license": {"name": "Lintas"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": server,
                "protocol": "kafka",
                "description": "The Kafka cluster (`LINTAS_KAFKA_BOOTSTRAP`)",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": _used_schemas(defs, messages)},
    }


def _used_schemas(defs: Mapping[str, Any], messages: Mapping[str, Any]) -> dict[str, Any]:
    wanted: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(_SCHEMAS):
                name = ref[len(_SCHEMAS) :]
                if name not in wanted:
                    wanted.append(name)
                    visit(defs[name])
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(messages)
    return {name: copy.deepcopy(defs[name]) for name in sorted(wanted)}


def service_document(
    service: str, subscriptions: Iterable[Subscription], *, version: str = DOCS_VERSION
) -> dict[str, Any]:
    """One service's document: what it sends, and what its subscriptions receive."""
    return document(
        [service],
        {service: tuple(subscriptions)},
        title=f"Lintas {service}",
        description=f"The events Lintas's {service} service publishes and consumes.",
        version=version,
    )


def combined_document() -> dict[str, Any]:
    """The whole system: every topic, every producer and consumer (default groups)."""
    return document(
        list(SENDS),
        RECEIVES,
        title="Lintas events",
        description="Every topic of Lintas, with every producer (intake, referral, notify) "
        "and every consumer, in their default consumer groups.",
    )


def dumps(doc: Mapping[str, Any]) -> str:
    """The committed form of a document: sorted keys, two-space indent, final newline."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


# --- the HTML page ------------------------------------------------------------------------

_CSS: Final = """
body{font:15px/1.5 system-ui,sans-serif;max-width:62rem;margin:0 auto;padding:1rem;color:#1b1b1b}
h1,h2,h3{line-height:1.2}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.5rem}
code,pre{font:13px/1.4 ui-monospace,monospace;background:#f4f4f4;border-radius:3px}
code{padding:0 .2rem}pre{padding:.6rem;overflow-x:auto}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}
section.message{border-left:4px solid #3b6ea5;padding-left:1rem;margin:1.5rem 0}
.send{color:#7a3e00}.receive{color:#0b5d1e}details{margin:.4rem 0}summary{cursor:pointer}
nav ul{columns:2}
"""


def _md(text: str) -> str:
    """The little Markdown the descriptions use: paragraphs, `code` and **bold**."""
    out = []
    for para in text.split("\n\n"):
        escaped = html.escape(" ".join(para.split()))
        pieces = escaped.split("`")
        escaped = "".join(
            f"<code>{p}</code>" if i % 2 else p.replace("**", "\x00") for i, p in enumerate(pieces)
        )
        bold = escaped.split("\x00")
        escaped = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(bold))
        out.append(f"<p>{escaped}</p>")
    return "\n".join(out)


def _schema_rows(
    schema: Mapping[str, Any], schemas: Mapping[str, Any], prefix: str, rows: list[str]
) -> None:
    schema = _resolve(schema, schemas)
    required = set(schema.get("required", ()))
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        target = _resolve(sub, schemas)
        variants = [_resolve(v, schemas) for v in target.get("anyOf", [target])]
        kinds = []
        for v in variants:
            kind = v.get("type", v.get("title", "any"))
            if kind == "array":
                item = _resolve(v.get("items", {}), schemas)
                kind = f"array of {item.get('title') or item.get('type', 'any')}"
            elif kind == "object" and v.get("title"):
                kind = str(v["title"])
            if "enum" in v or "const" in v:
                values = [str(x) for x in v.get("enum", [v.get("const")])]
                if len(values) > 12:
                    values = [f"one of {len(values)} codes: {', '.join(values[:6])}, …"]
                kind += " (" + " | ".join(values) + ")"
            if str(v.get("pattern", "")).startswith("^enc:v1:"):
                kind += " (sealed)"
            elif "format" in v:
                kind += f" ({v['format']})"
            kinds.append(str(kind))
        note = sub.get("description") or target.get("description") or ""
        rows.append(
            f"<tr><td><code>{html.escape(path)}</code></td><td>{html.escape(' or '.join(kinds))}"
            f"</td><td>{'yes' if name in required else ''}</td><td>{html.escape(note)}</td></tr>"
        )
        for v in variants:
            if v.get("type") == "object" and "properties" in v:
                _schema_rows(v, schemas, path + ".", rows)
            elif v.get("type") == "array":
                item = _resolve(v.get("items", {}), schemas)
                if "properties" in item:
                    _schema_rows(item, schemas, path + "[].", rows)


def render_html(doc: Mapping[str, Any]) -> str:
    """A self-contained page (no script, no external asset) of an AsyncAPI document."""
    schemas = doc["components"]["schemas"]
    messages = doc["components"]["messages"]
    info = doc["info"]
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(info['title'])} (AsyncAPI {doc['asyncapi']})</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(info['title'])} <small>{html.escape(info['version'])}</small></h1>",
        "<p>Generated from <code>docs/asyncapi.json</code> (AsyncAPI "
        f"{html.escape(doc['asyncapi'])}) by <code>python -m lintas_shared.asyncapi</code>; "
        "do not edit by hand.</p>",
        _md(info["description"]),
        "<nav><h2>Topics</h2><ul>",
    ]
    for cid in doc["channels"]:
        out.append(f'<li><a href="#ch-{html.escape(cid)}">{html.escape(cid)}</a></li>')
    out.append("</ul></nav>")
    for cid, channel in doc["channels"].items():
        out.append(f'<h2 id="ch-{html.escape(cid)}">Topic <code>{html.escape(cid)}</code></h2>')
        out.append(_md(channel.get("description", "")))
        config = channel["bindings"]["kafka"].get("topicConfiguration")
        if config:
            out.append(f"<p>Topic settings: <code>{html.escape(json.dumps(config))}</code></p>")
        ops = [
            (oid, op)
            for oid, op in doc["operations"].items()
            if op["channel"]["$ref"] == f"#/channels/{cid}"
        ]
        out.append("<table><tr><th>who</th><th>does</th><th>messages</th></tr>")
        for _oid, op in ops:
            names = [m["$ref"].rsplit("/", 1)[-1] for m in op["messages"]]
            types = [
                messages[channel["messages"][n]["$ref"].rsplit("/", 1)[-1]]["name"] for n in names
            ]
            extra = f"<br>{_md(op['description'])}" if op.get("description") else ""
            receiving = op["action"] == "receive"
            group = f" ({html.escape(op['summary'])})" if receiving else ""
            out.append(
                f'<tr><td class="{op["action"]}">{html.escape(op["title"])}</td>'
                f"<td>{op['action']}{group}{extra}</td>"
                f"<td>{', '.join(f'<code>{html.escape(t)}</code>' for t in types)}</td></tr>"
            )
        out.append("</table>")
        for ref in channel["messages"].values():
            mid = ref["$ref"].rsplit("/", 1)[-1]
            message = messages[mid]
            out.append(f'<section class="message" id="msg-{html.escape(cid)}-{html.escape(mid)}">')
            out.append(
                f"<h3>{html.escape(message.get('title', mid))} "
                f"<code>{html.escape(message['name'])}</code></h3>"
            )
            out.append(_md(message.get("description", "")))
            rows: list[str] = []
            header_props = message["headers"]["properties"]
            header_required = set(message["headers"].get("required", ()))
            out.append("<details><summary>Kafka headers</summary><table>")
            out.append("<tr><th>header</th><th>value</th><th>required</th><th></th></tr>")
            for name, sub in header_props.items():
                value = sub.get("const") or " | ".join(sub.get("enum", [])) or sub["type"]
                out.append(
                    f"<tr><td><code>{html.escape(name)}</code></td><td>{html.escape(str(value))}</td>"
                    f"<td>{'yes' if name in header_required else ''}</td>"
                    f"<td>{html.escape(sub.get('description', ''))}</td></tr>"
                )
            out.append("</table></details>")
            payload = message["payload"]
            if "$ref" in payload:
                _schema_rows(payload, schemas, "", rows)
                out.append("<table><tr><th>field</th><th>type</th><th>required</th><th></th></tr>")
                out.extend(rows)
                out.append("</table>")
            else:
                out.append(_md(payload.get("description", "")))
            for example in message.get("examples", ()):
                out.append("<details><summary>Example</summary><pre>")
                out.append(html.escape(json.dumps(example, indent=2, ensure_ascii=False)))
                out.append("</pre></details>")
            out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_docs(directory: Path) -> list[Path]:
    """Write the combined document and its page into `directory`; returns the files."""
    doc = combined_document()
    json_path, html_path = directory / "asyncapi.json", directory / "asyncapi.html"
    json_path.write_text(dumps(doc), encoding="utf-8")
    html_path.write_text(render_html(doc), encoding="utf-8")
    return [json_path, html_path]


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m lintas_shared.asyncapi --combined | --service NAME | --write DIR`."""
    parser = argparse.ArgumentParser(prog="python -m lintas_shared.asyncapi")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--combined", action="store_true", help="print the combined document")
    group.add_argument("--service", choices=sorted(SENDS), help="print one service's document")
    group.add_argument("--write", type=Path, metavar="DIR", help="write asyncapi.json/.html")
    args = parser.parse_args(argv)
    if args.write:
        for path in write_docs(args.write):
            print(f"wrote {path}", file=sys.stderr)
    elif args.service:
        sys.stdout.write(dumps(service_document(args.service, RECEIVES[args.service])))
    else:
        sys.stdout.write(dumps(combined_document()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
