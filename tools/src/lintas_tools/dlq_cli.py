"""`lintas dlq`: look at dead letters, replay them once the cause is fixed, or discard them.

Its usage and rules are `lintas dlq --help` (`lintas_tools.arguments.DLQ_DESCRIPTION`).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TextIO

from lintas_shared.logging import redact_personal_data
from lintas_shared.mongo import make_mongo_client
from pymongo.errors import PyMongoError

from lintas_tools.dead_letters import (
    HANDLED,
    DeadLetter,
    DeadLetterError,
    DeadLetterOperations,
    Entry,
    EntryRef,
    KafkaDeadLetters,
    Ledger,
    Outcome,
    SkipReason,
    describe_handled,
    refuse_truncated,
)

#: The ledger's collection, in the database named by LINTAS_OPS_DATABASE.
LEDGER_COLLECTION: Final = "dead_letters"
DEFAULT_OPS_DATABASE: Final = "lintas_ops"
#: How much of a malformed payload `show` prints.
PAYLOAD_EXCERPT_BYTES: Final = 512
REASON_WIDTH: Final = 100
HEADER_VALUE_WIDTH: Final = 300
#: How `lintas_shared.consumer` starts the reason of a record that is not a CloudEvent.
MALFORMED_REASON_PREFIX: Final = "malformed:"


@dataclass(frozen=True)
class DlqTarget:
    """Where the dead letters and the ledger are, and who is acting."""

    kafka_bootstrap: str
    mongodb_uri: str
    database: str
    operator: str


def default_operator() -> str:
    """Who acts: $LINTAS_OPERATOR, else the OS user."""
    return os.environ.get("LINTAS_OPERATOR") or getpass.getuser()


def run(args: argparse.Namespace, target: DlqTarget, out: TextIO | None = None) -> int:
    """Run one `lintas dlq` subcommand; returns the exit code.

    Raises DeadLetterError (a RuntimeError, which `lintas` reports) for a bad selection,
    a missing entry, or a store or broker that does not answer.
    """
    try:
        return asyncio.run(_run(args, target, out or sys.stdout))
    except PyMongoError as exc:
        raise DeadLetterError(f"the ledger's store failed: {type(exc).__name__}: {exc}") from exc
    except TimeoutError as exc:
        raise DeadLetterError("Kafka did not answer in time") from exc


async def _run(args: argparse.Namespace, target: DlqTarget, out: TextIO) -> int:
    if args.dlq_command in ("replay", "discard"):
        _check_selection(args)
    kafka = KafkaDeadLetters(target.kafka_bootstrap)
    mongo = make_mongo_client(target.mongodb_uri, app_name="lintas-dlq")
    operator = getattr(args, "by", None) or target.operator
    ops = DeadLetterOperations(
        kafka, kafka, Ledger(mongo[target.database][LEDGER_COLLECTION]), operator
    )
    try:
        await kafka.start()
        try:
            if args.dlq_command == "list":
                return await _list(ops, args, out)
            if args.dlq_command == "show":
                entry = await ops.find(EntryRef.parse(args.entry))
                _emit(out, args.json, show_document(entry), show_text(entry))
                return 0
            return await _act(ops, args, out)
        finally:
            await kafka.stop()
    finally:
        await mongo.close()


def _check_selection(args: argparse.Namespace) -> None:
    if args.all and args.entry:
        raise DeadLetterError("give ENTRY or --all, not both")
    if not args.all and not args.entry:
        raise DeadLetterError("give ENTRY or --all")
    if args.topic and not args.all:
        raise DeadLetterError("--topic goes with --all")


async def _list(ops: DeadLetterOperations, args: argparse.Namespace, out: TextIO) -> int:
    entries = await ops.entries(await ops.topics(args.topic))
    shown = [e for e in entries if args.all_states or e.state not in HANDLED]
    if args.json:
        out.write(json.dumps([list_document(e) for e in shown], indent=2) + "\n")
    else:
        out.write(list_text(shown))
        hidden = len(entries) - len(shown)
        note = f"; {hidden} handled (--all-states shows them)" if hidden else ""
        print(f"{len(shown)} dead letters{note}", file=sys.stderr)
    return 0


async def _act(ops: DeadLetterOperations, args: argparse.Namespace, out: TextIO) -> int:
    if args.all:
        topic_entries = await ops.entries(await ops.topics(args.topic))
        targets = [e for e in topic_entries if e.state not in HANDLED]
    else:
        target = await ops.find(EntryRef.parse(args.entry))
        targets = [target]
        # A replay also marks the entries parked from the same source record.
        replay = args.dlq_command == "replay" and not args.dry_run
        topic_entries = await ops.entries([target.letter.topic]) if replay else targets
    if args.dlq_command == "replay" and args.dry_run:
        documents = [list_document(t) for t in targets]
        lines = "".join(_dry_run_text(t) for t in targets)
        _emit(out, args.json, documents, lines or "nothing to replay\n")
        # As the replay itself would: one truncated entry named is refused.
        return 1 if not args.all and any(t.letter.truncated for t in targets) else 0
    if args.dlq_command == "replay":
        outcomes = await ops.replay(targets, topic_entries)
    else:
        outcomes = await ops.discard(targets, args.reason)
    counts = Counter(o.action.value for o in outcomes)
    skipped = Counter(o.skipped.value for o in outcomes if o.skipped is not None)
    document: dict[str, Any] = {
        "counts": dict(counts),
        "outcomes": [outcome_document(o) for o in outcomes],
    }
    if skipped:
        document["skipped"] = dict(skipped)
    lines = "".join(outcome_text(o) for o in outcomes)
    _emit(out, args.json, document, lines + summary_text(counts, skipped, args.dlq_command))
    # --all skips a truncated entry; naming one to replay is an error the caller must see.
    refused = not args.all and skipped.get(SkipReason.TRUNCATED.value)
    return 1 if counts.get("failed") or refused else 0


def _dry_run_text(target: Entry) -> str:
    letter = target.letter
    if letter.truncated:
        return f"would skip   {letter.id}: {clean(refuse_truncated(letter).detail)}\n"
    return f"would replay {letter.id} to {clean(letter.source_topic) or '-'}\n"


def summary_text(counts: Counter[str], skipped: Counter[str], command: str) -> str:
    """`1 replayed, 2 skipped (1 already handled, 1 truncated)`, or `nothing to replay`."""
    parts = []
    for action, n in sorted(counts.items()):
        part = f"{n} {action}"
        if action == "skipped" and skipped:
            part += f" ({', '.join(f'{m} {why}' for why, m in sorted(skipped.items()))})"
        parts.append(part)
    return (", ".join(parts) or f"nothing to {command}") + "\n"


def _emit(out: TextIO, as_json: bool, document: Any, text: str) -> None:
    out.write(json.dumps(document, indent=2) + "\n" if as_json else text)


# --- rendering: lean, one line per entry, no payloads, nothing personal ----------------------


def clean(text: str | None, limit: int | None = None) -> str:
    """Safe to print: phone- and ID-shaped numbers masked, control characters escaped
    (a hostile header must not break a line or move the cursor), and truncated."""
    if text is None:
        return ""
    masked = redact_personal_data(None, "", {"text": text})["text"]
    escaped = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in masked
    )
    if limit is not None and len(escaped) > limit:
        return escaped[: limit - 1] + "…"
    return escaped


def _when(raw: str | None) -> str:
    try:
        return datetime.fromisoformat(raw or "").isoformat(timespec="seconds")
    except ValueError:
        return clean(raw, 40)


def list_document(entry: Entry) -> dict[str, Any]:
    """One entry for `list --json`: where, why and what, never the payload."""
    letter = entry.letter
    document: dict[str, Any] = {
        "id": letter.id,
        "state": entry.state.value,
        "dlq_topic": letter.topic,
        "partition": letter.partition,
        "offset": letter.offset,
        "failed_at": _when(letter.failed_at) or None,
        "consumer": clean(letter.consumer, 100) or None,
        "source": _source_document(entry),
        "event_type": clean(letter.event_type, 200) or None,
        "event_id": clean(letter.event_id, 200) or None,
        "reason": clean(letter.reason),
        # The record's size as it was consumed (before any truncation), in bytes; None
        # when a truncated record's size was not recorded.
        "bytes": letter.original_size if letter.truncated else letter.payload_size,
        "truncated": letter.truncated,
    }
    if entry.record is not None:
        document["handled"] = _ledger_document(entry.record)
    return document


def _source_document(entry: Entry) -> dict[str, Any] | None:
    letter = entry.letter
    if letter.source_id is None:
        return None
    topic, partition, offset = letter.source_id.rsplit(":", 2)
    return {
        "topic": clean(topic, 250),
        "partition": int(partition) if partition.isdigit() else clean(partition, 20),
        "offset": int(offset) if offset.isdigit() else clean(offset, 20),
    }


def _ledger_document(record: dict[str, Any]) -> dict[str, Any]:
    keep = ("state", "by", "at", "reason", "to", "with")
    return {
        k: (record[k].isoformat() if isinstance(record[k], datetime) else record[k])
        for k in keep
        if record.get(k) is not None
    }


def _size_text(letter: DeadLetter) -> str:
    """`812 B`, or `2000000 B, truncated` for a record parked as its first part only."""
    if not letter.truncated:
        return f"{letter.payload_size} B"
    size = letter.original_size
    return "truncated" if size is None else f"{size} B, truncated"


def list_text(entries: Sequence[Entry]) -> str:
    """Aligned columns with a header line; the reason last, shortened."""
    header = (
        "ID",
        "STATE",
        "FAILED AT",
        "CONSUMER",
        "SOURCE",
        "EVENT TYPE",
        "EVENT ID",
        "SIZE",
        "REASON",
    )
    rows = [header]
    for entry in entries:
        letter = entry.letter
        rows.append(
            (
                letter.id,
                entry.state.value,
                _when(letter.failed_at) or "-",
                clean(letter.consumer, 40) or "-",
                clean(letter.source_id, 120) or "-",
                clean(letter.event_type, 80) or "-",
                clean(letter.event_id, 80) or "-",
                _size_text(letter),
                clean(letter.reason, REASON_WIDTH) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]) + "\n"
        for row in rows
    )


def show_document(entry: Entry) -> dict[str, Any]:
    """One entry for `show --json`: headers, reason, payload size; the payload only if
    it is not a valid CloudEvent (then it cannot hold sealed fields a consumer needs)."""
    letter = entry.letter
    document = list_document(entry)
    document["reason"] = clean(letter.reason)
    document["key"] = (
        clean(letter.key.decode("utf-8", errors="replace"), 200) if letter.key else None
    )
    document["headers"] = {
        clean(k, 100): clean(v.decode("utf-8", errors="replace"), HEADER_VALUE_WIDTH)
        for k, v in letter.headers
    }
    document["payload_bytes"] = letter.payload_size
    if letter.truncated:
        document["original_bytes"] = letter.original_size
        # A cut value never parses: what the consumer found in the whole record is in
        # its reason (a record that is not a CloudEvent is parked as `malformed: …`).
        malformed: str | None = (
            letter.reason if letter.reason.startswith(MALFORMED_REASON_PREFIX) else None
        )
    else:
        parsed = letter.parse()
        malformed = str(parsed) if isinstance(parsed, Exception) else None
    document["valid_cloudevent"] = malformed is None
    if malformed is not None:
        excerpt = (letter.value or b"")[:PAYLOAD_EXCERPT_BYTES]
        document["malformed"] = clean(malformed)
        document["payload_excerpt"] = clean(excerpt.decode("utf-8", errors="backslashreplace"))
        document["payload_truncated"] = letter.payload_size > PAYLOAD_EXCERPT_BYTES
    return document


def show_text(entry: Entry) -> str:
    """`show` for people."""
    doc = show_document(entry)
    source = doc["source"]
    lines = [
        f"entry       {doc['id']}",
        f"state       {doc['state']}",
    ]
    if entry.record is not None:
        lines.append(f"handled     {clean(describe_handled(entry.record))}")
    lines += [
        f"reason      {doc['reason'] or '-'}",
        f"failed at   {doc['failed_at'] or '-'}",
        f"consumer    {doc['consumer'] or '-'}",
        "source      "
        + (
            f"{source['topic']} partition {source['partition']} offset {source['offset']}"
            if source
            else "-"
        ),
        f"key         {doc['key'] or '-'}",
    ]
    size = f"{doc['payload_bytes']} bytes"
    when = ""
    if entry.letter.truncated:
        lines.append(
            f"truncated   yes, when parked: {entry.letter.describe_truncation()} kept; "
            "it cannot be replayed (that would send the cut record)"
        )
        size += f" kept of {doc['original_bytes'] or 'an unrecorded number'}"
        when = " when parked"  # as the consumer found the whole record
    if doc["valid_cloudevent"]:
        lines.append(
            f"payload     {size}, a valid CloudEvent{when} "
            "(not shown: it may hold sealed personal fields)"
        )
    else:
        lines.append(f"payload     {size}, not a valid CloudEvent{when}")
        lines.append(f"            {doc['malformed']}")
    lines.append("headers")
    width = max((len(k) for k in doc["headers"]), default=0)
    lines += [f"  {k.ljust(width)}  {v}" for k, v in doc["headers"].items()]
    if not doc["valid_cloudevent"]:
        shown = min(doc["payload_bytes"], PAYLOAD_EXCERPT_BYTES)
        cut = f", first {shown} of {doc['payload_bytes']} bytes" if doc["payload_truncated"] else ""
        lines.append(f"payload (phone and ID numbers masked{cut})")
        lines.append(f"  {doc['payload_excerpt']}")
    return "\n".join(lines) + "\n"


def outcome_document(outcome: Outcome) -> dict[str, Any]:
    """One replay or discard result for --json."""
    return {
        "id": outcome.id,
        "action": outcome.action.value,
        "detail": clean(outcome.detail),
        "to": outcome.to,
        "covers": list(outcome.covers),
        "skipped": outcome.skipped.value if outcome.skipped is not None else None,
    }


def outcome_text(outcome: Outcome) -> str:
    """`replayed  ID -> TOPIC:P:O`, `skipped   ID: already …`, `failed    ID: why`."""
    head = f"{outcome.action.value:<9} {outcome.id}"
    if outcome.to:
        line = f"{head} -> {outcome.to}"
        if outcome.detail != "replayed":
            line += f" ({outcome.detail})"
    elif outcome.action.value in ("skipped", "failed"):
        line = f"{head}: {clean(outcome.detail)}"
    else:
        line = head
    if outcome.covers:
        line += f"\n          also marks {', '.join(outcome.covers)} replayed (same source record)"
    return line + "\n"
