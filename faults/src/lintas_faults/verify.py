"""The final checks: read the stores, the SMS file and the topics directly, and count.

Nothing here asks the services; it reads what they left behind, as an auditor would.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lintas_shared.mongo import make_mongo_client
from lintas_shared.topics import SOURCE_TOPICS, dead_letter_topic

from lintas_faults.driver import Submission
from lintas_faults.kafka_ops import (
    POISON_HEADER,
    Poison,
    Record,
    expected_consumers,
    read_all,
)
from lintas_faults.stack import DATABASES

CASE_RECEIVED = "case_received"
#: Intake statuses that show the referral's news reached the case.
ROUTED_STATUSES = {"referred", "accepted", "in_progress", "awaiting_consent", "unassigned"}
#: Referral states still open to the partner: none may be left once the case is closed.
OPEN_REFERRAL = {"offered", "accepted", "in_progress"}
#: Event types whose effect must happen once per key: a second id is a second effect.
ONCE_PER_KEY = {
    "org.lintas.case.submitted",
    "org.lintas.referral.offered",
    "org.lintas.notification.sms_sent",
}


@dataclass
class Snapshot:
    """Everything read back from the stores and the SMS file."""

    cases: list[dict[str, Any]]
    routings: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    sms_lines: list[dict[str, Any]]


async def snapshot(mongodb_uri: str, sms_outbox: Path) -> Snapshot:
    """Read intake's cases, referral's routings and notify's messages (no outboxes)."""
    client = make_mongo_client(mongodb_uri, app_name="lintas-faults-check")
    try:
        cases = await (
            client[DATABASES["intake"]]["cases"]
            .find(
                {},
                {
                    "external_ref": 1,
                    "reference": 1,
                    "status": 1,
                    "processed_events": 1,
                    "idempotency_key": 1,
                },
            )
            .to_list(None)
        )
        routings = await (
            client[DATABASES["referral"]]["routings"]
            .find(
                {},
                {
                    "status": 1,
                    "reason": 1,
                    "blocked": 1,
                    "referrals": 1,
                    "processed_events": 1,
                    "processed": 1,  # the field's name before the unit of work
                },
            )
            .to_list(None)
        )
        messages = await (
            client[DATABASES["notify"]]["messages"]
            .find(
                {},
                {
                    "case_id": 1,
                    "template": 1,
                    "causing_event": 1,
                    "status": 1,
                    "status_history.status": 1,
                },
            )
            .to_list(None)
        )
    finally:
        await client.close()
    lines = await asyncio.to_thread(_sms_lines, sms_outbox)
    return Snapshot(cases, routings, messages, lines)


def _sms_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a SIGKILL was never a sent message
    return lines


def routed(routing: dict[str, Any] | None) -> bool:
    """An offer was made, or routing is blocked with a reason."""
    if routing is None:
        return False
    if routing.get("referrals"):
        return True
    blocked = routing.get("blocked") or {}
    return bool(blocked) and all(b.get("reason") for b in blocked.values())


def intake_updated(sub: Submission, case: dict[str, Any] | None) -> bool:
    """Intake's status shows referral's news (or, for a case closed, that it is closed)."""
    status = (case or {}).get("status")
    if sub.close == "closed":
        return status == "closed"
    if sub.close is not None:  # the close went unanswered: either state is right
        return status in ROUTED_STATUSES | {"closed"}
    return status in ROUTED_STATUSES


def referral_expected(sub: Submission, routing: dict[str, Any] | None) -> bool:
    """Referral's routing is in the state the case's events lead to, in their order."""
    if sub.close == "closed":
        return (
            routed(routing)
            and (routing or {}).get("status") == "closed"
            and not any(
                r.get("status") in OPEN_REFERRAL for r in (routing or {}).get("referrals", [])
            )
        )
    return routed(routing)


def settled(subs: list[Submission], snap: Snapshot) -> tuple[int, int]:
    """(acknowledged cases fully handled, acknowledged cases) for the settle loop."""
    acked = [s for s in subs if s.case_id]
    cases = {c["_id"]: c for c in snap.cases}
    routings = {r["_id"]: r for r in snap.routings}
    received = {
        line.get("case_reference")
        for line in snap.sms_lines
        if line.get("template") == CASE_RECEIVED
    }
    done = sum(
        1
        for s in acked
        if s.case_id in cases
        and intake_updated(s, cases[s.case_id])
        and referral_expected(s, routings.get(s.case_id))
        and s.reference in received
    )
    return done, len(acked)


async def wait_settled(
    subs: list[Submission],
    mongodb_uri: str,
    sms_outbox: Path,
    within: float,
    quiet: float,
    say: Callable[[str], None],
) -> Snapshot:
    """Poll until every acknowledged case is handled and nothing changed for `quiet` s."""
    deadline = time.monotonic() + within
    last: tuple[int, int, int, int] | None = None
    stable_since = time.monotonic()
    while True:
        try:
            snap = await snapshot(mongodb_uri, sms_outbox)
        except Exception as exc:  # the store may still be coming back
            say(f"settle: store not readable yet ({type(exc).__name__})")
            await asyncio.sleep(2)
            if time.monotonic() > deadline:
                raise
            continue
        done, total = settled(subs, snap)
        shape = (done, len(snap.routings), len(snap.messages), len(snap.sms_lines))
        if shape != last:
            last, stable_since = shape, time.monotonic()
            say(f"settle: {done}/{total} acknowledged cases handled end to end")
        if done == total and time.monotonic() - stable_since >= quiet:
            return snap
        if time.monotonic() > deadline:
            say(f"settle: gave up after {within:.0f}s with {done}/{total}")
            return snap
        await asyncio.sleep(2)


@dataclass
class Table:
    """The result of a run, printed and written as JSON."""

    seed: int
    cases_requested: int
    acknowledged: int = 0
    gave_up_or_refused: int = 0
    stored: int = 0
    stored_not_acknowledged: int = 0
    intake_status_updated: int = 0
    referral_state_expected: int = 0
    referral_offered: int = 0
    referral_blocked: int = 0
    closed_requested: int = 0
    closed_acknowledged: int = 0
    closed_in_order: int = 0
    sms_expected: int = 0
    sms_sent: int = 0
    duplicates: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    lost_total: int = 0
    duplicates_total: int = 0
    republished_same_id: int = 0
    poison_injected: int = 0
    dlq_expected: int = 0
    dlq_entries: int = 0
    dlq_distinct: int = 0
    dlq_matching_poison: int = 0
    dlq_unexpected: int = 0
    dlq_per_topic: dict[str, int] = field(default_factory=dict)
    chaos: dict[str, Any] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    passed: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)

    def render(self) -> str:
        rows = [
            ("cases requested", self.cases_requested),
            ("cases acknowledged by the API (201/200)", self.acknowledged),
            ("  client gave up or refused", self.gave_up_or_refused),
            ("cases stored (intake)", self.stored),
            ("  stored but never acknowledged", self.stored_not_acknowledged),
            ("cases with intake status updated by referral", self.intake_status_updated),
            ("cases with expected referral state", self.referral_state_expected),
            ("  offered to a partner", self.referral_offered),
            ("  blocked with a reason (e.g. partner at capacity)", self.referral_blocked),
            ("cases closed right after submission (order check)", self.closed_requested),
            ("  close acknowledged by the API", self.closed_acknowledged),
            ("  closed everywhere, in order (offer, then withdrawn)", self.closed_in_order),
            ("'case received' SMS expected", self.sms_expected),
            ("'case received' SMS sent (outbox lines, distinct cases)", self.sms_sent),
        ]
        rows += [(f"duplicates: {k}", v) for k, v in self.duplicates.items()]
        rows.append(("DUPLICATES (total)", self.duplicates_total))
        rows += [(f"lost: {k}", v) for k, v in self.lost.items()]
        rows.append(("LOST (acknowledged, missing anywhere)", self.lost_total))
        rows.append(
            ("events republished with the same id (at-least-once, ok)", self.republished_same_id)
        )
        rows += [
            ("poison records injected", self.poison_injected),
            ("DLQ entries expected (poison x consumers)", self.dlq_expected),
            ("DLQ entries (raw)", self.dlq_entries),
            ("DLQ entries distinct by (source record, consumer)", self.dlq_distinct),
            ("DLQ entries matching injected poison", self.dlq_matching_poison),
            ("DLQ entries not from poison (real events parked)", self.dlq_unexpected),
        ]
        rows += [(f"  {k}", v) for k, v in self.dlq_per_topic.items()]
        width = max(len(r[0]) for r in rows)
        lines = [f"| {'check':<{width}} | {'count':>7} |", f"|{'-' * (width + 2)}|{'-' * 9}|"]
        lines += [f"| {name:<{width}} | {value:>7} |" for name, value in rows]
        lines.append(f"result: {'PASS' if self.passed else 'FAIL'} (seed {self.seed})")
        return "\n".join(lines)


def _dupes(counter: Counter[Any]) -> int:
    return sum(n - 1 for n in counter.values() if n > 1)


def _examples(counter: Counter[Any], limit: int = 5) -> list[str]:
    return [f"{k!r} x{n}" for k, n in counter.items() if n > 1][:limit]


async def build_table(
    seed: int,
    subs: list[Submission],
    snap: Snapshot,
    bootstrap: str,
    poison: list[Poison],
) -> Table:
    """Count everything; `passed` only if lost = 0, duplicates = 0 and DLQ = poison."""
    t = Table(seed=seed, cases_requested=len(subs))
    acked = [s for s in subs if s.case_id]
    t.acknowledged = sum(1 for s in subs if s.outcome == "acknowledged")
    t.gave_up_or_refused = sum(1 for s in subs if s.outcome in ("gave_up", "refused"))
    ours = {s.external_ref for s in subs}
    cases = {c["_id"]: c for c in snap.cases if c.get("external_ref") in ours}
    routings = {r["_id"]: r for r in snap.routings}
    acked_ids = {s.case_id for s in acked}
    t.stored = sum(1 for s in acked if s.case_id in cases)
    t.stored_not_acknowledged = len(set(cases) - acked_ids)
    t.intake_status_updated = sum(1 for s in acked if intake_updated(s, cases.get(s.case_id or "")))
    t.referral_state_expected = sum(
        1 for s in acked if referral_expected(s, routings.get(s.case_id or ""))
    )
    t.closed_requested = sum(1 for s in acked if s.close is not None)
    t.closed_acknowledged = sum(1 for s in acked if s.close == "closed")
    t.closed_in_order = sum(
        1
        for s in acked
        if s.close == "closed"
        and intake_updated(s, cases.get(s.case_id or ""))
        and referral_expected(s, routings.get(s.case_id or ""))
    )
    t.referral_offered = sum(
        1 for s in acked if (routings.get(s.case_id or "") or {}).get("referrals")
    )
    t.referral_blocked = t.referral_state_expected - t.referral_offered

    received = [line for line in snap.sms_lines if line.get("template") == CASE_RECEIVED]
    received_refs = {line.get("case_reference") for line in received}
    t.sms_expected = len(acked)
    t.sms_sent = sum(1 for s in acked if s.reference in received_refs)

    # Duplicates, each by its own key.
    dup: dict[str, Counter[Any]] = {
        "cases with the same external_ref": Counter(c.get("external_ref") for c in snap.cases),
        "routings per case (referral)": Counter(r["_id"] for r in snap.routings),
        "SMS records per (causing event, template)": Counter(
            (m.get("causing_event"), m.get("template")) for m in snap.messages
        ),
        "SMS sent per (case, template) (outbox lines)": Counter(
            (line.get("case_reference"), line.get("template")) for line in snap.sms_lines
        ),
        "SMS sent per client reference (outbox lines)": Counter(
            line.get("client_reference") for line in snap.sms_lines
        ),
        # Each `sent` record pushes an sms_sent event; its id is fixed per message, so a
        # second record would be absorbed downstream and must be counted here.
        "`sent` recorded per SMS record (notify)": Counter(
            m["_id"]
            for m in snap.messages
            for h in m.get("status_history") or ()
            if h.get("status") == "sent"
        ),
        "event ids processed twice (intake processed_events)": Counter(
            (c["_id"], e) for c in snap.cases for e in c.get("processed_events") or ()
        ),
        "event ids processed twice (referral processed_events)": Counter(
            (r["_id"], e)
            for r in snap.routings
            for e in [*(r.get("processed_events") or ()), *(r.get("processed") or ())]
        ),
    }
    records: dict[str, list[Record]] = {}
    for topic in (*SOURCE_TOPICS, *(dead_letter_topic(t) for t in SOURCE_TOPICS)):
        records[topic] = await read_all(bootstrap, topic)
    ids: Counter[str] = Counter()
    effects: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for topic in SOURCE_TOPICS:
        for r in records[topic]:
            h = r.headers
            if POISON_HEADER in h or "ce_id" not in h:
                continue
            ids[h["ce_id"]] += 1
            if h.get("ce_type") in ONCE_PER_KEY:
                extra = ""
                if h["ce_type"].endswith("sms_sent"):
                    try:
                        extra = str(json.loads(r.value or b"{}").get("template", ""))
                    except ValueError:
                        extra = "?"
                effects[(h.get("ce_subject", ""), h["ce_type"], extra)].add(h["ce_id"])
    t.republished_same_id = _dupes(ids)
    dup["distinct events with one effect key (submitted/offered/sms_sent)"] = Counter(
        {k: len(v) for k, v in effects.items()}
    )
    t.duplicates = {k: _dupes(c) for k, c in dup.items()}
    t.examples = {k: _examples(c) for k, c in dup.items() if _dupes(c)}
    t.duplicates_total = sum(t.duplicates.values())

    lost = {
        "not stored": {s.case_id for s in acked if s.case_id not in cases},
        "no referral routing in the expected state (incl. order)": {
            s.case_id for s in acked if not referral_expected(s, routings.get(s.case_id or ""))
        },
        "intake status never updated": {
            s.case_id for s in acked if not intake_updated(s, cases.get(s.case_id or ""))
        },
        "no 'case received' SMS": {s.case_id for s in acked if s.reference not in received_refs},
    }
    t.lost = {k: len(v) for k, v in lost.items()}
    t.lost_total = len(set().union(*lost.values()))
    for k, v in lost.items():
        if v:
            t.examples[f"lost: {k}"] = sorted(str(x) for x in v)[:5]

    # Dead letters against the poison.
    t.poison_injected = len(poison)
    expected = {(p.id, p.topic, c) for p in poison for c in expected_consumers(p.topic, p.kind)}
    t.dlq_expected = len(expected)
    seen: set[tuple[str, str, str]] = set()
    unexpected = []
    for topic in SOURCE_TOPICS:
        dlq = records[dead_letter_topic(topic)]
        t.dlq_entries += len(dlq)
        t.dlq_per_topic[dead_letter_topic(topic)] = len(dlq)
        distinct = set()
        for r in dlq:
            h = r.headers
            source = (
                h.get("lintas_dlq_source_topic", ""),
                h.get("lintas_dlq_source_partition", ""),
                h.get("lintas_dlq_source_offset", ""),
                h.get("lintas_dlq_consumer", ""),
            )
            distinct.add(source)
            if POISON_HEADER in h:
                seen.add((h[POISON_HEADER], source[0], source[3]))
            else:
                unexpected.append(f"{source} {h.get('lintas_dlq_reason', '')[:120]}")
        t.dlq_distinct += len(distinct)
    t.dlq_matching_poison = len(seen & expected)
    t.dlq_unexpected = len(unexpected)
    if unexpected:
        t.examples["DLQ entries not from poison"] = unexpected[:5]
    missing = sorted(expected - seen)
    if missing:
        t.examples["poison never dead-lettered"] = [str(m) for m in missing[:10]]
    t.passed = (
        t.lost_total == 0
        and t.duplicates_total == 0
        and t.dlq_matching_poison == t.dlq_expected
        and not (seen - expected)
        and t.dlq_unexpected == 0
        and t.acknowledged > 0
        # The order check must have run: every close asked for was answered.
        and t.closed_acknowledged == t.closed_requested
    )
    return t
