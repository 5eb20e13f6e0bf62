"""Referral's use cases: each reads one case's routing, changes it, and writes it back
with the events it caused in the same single-document update."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Protocol

from lintas_shared.case_locks import CaseLocks
from lintas_shared.consumer import PermanentEventError
from lintas_shared.crypto import CaseKeyMissingError, DataKey
from lintas_shared.envelope import CloudEvent
from lintas_shared.events import (
    PARTNER_NOTE_FIELD,
    CaseClosed,
    CaseDetailsCorrected,
    CaseErased,
    CaseSubmitted,
    ConsentRecorded,
    ConsentWithdrawn,
    EventPayload,
    ReferralOffered,
    make_event,
    parse_payload,
)
from lintas_shared.logging import get_logger
from lintas_shared.values import Money

from lintas_referral.domain.case_routing import (
    CaseRouting,
    Outcome,
    Policy,
    Progress,
    ReferralNotFoundError,
    TransitionError,
)
from lintas_referral.domain.handoff import minimised_view, referral_key, seal_content
from lintas_referral.domain.routing import Partner
from lintas_referral.domain.rules import RuleBook

SOURCE = "/lintas/referral"
Clock = Callable[[], datetime]
log = get_logger(__name__)


def utc_now() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


class PartnerDirectory(Protocol):
    """The legal partners, with their current load."""

    async def in_countries(self, countries: Iterable[str]) -> Mapping[str, Sequence[Partner]]:
        """Active partners of each country."""
        ...

    async def by_id(self, partner_id: str) -> Partner | None:
        """One active partner."""
        ...


class KeyReader(Protocol):
    """Reads a case's data key (the key vault); raises CaseKeyMissingError after erasure."""

    async def get(self, case_id: str) -> DataKey:
        """The case's key."""
        ...


class RoutingRepository(Protocol):
    """One routing document per case; a write carries its events in the same update."""

    async def insert(self, routing: CaseRouting, events: Sequence[CloudEvent]) -> bool:
        """Store a new routing; False if the case was already routed."""
        ...

    async def save(
        self, routing: CaseRouting, expected_version: int, events: Sequence[CloudEvent]
    ) -> bool:
        """Write if still at `expected_version`; False if someone else wrote first."""
        ...

    async def get(self, case_id: str) -> CaseRouting | None:
        """The routing of a case."""
        ...

    async def by_referral(self, referral_id: str) -> CaseRouting | None:
        """The routing holding a referral."""
        ...

    async def due(self, now: datetime, limit: int = 100) -> list[str]:
        """Cases with something due at or before `now`."""
        ...

    async def for_partner(self, partner_id: str) -> list[CaseRouting]:
        """Routings with a referral ever offered to the partner."""
        ...


@dataclass(frozen=True)
class Referrals:
    """What the use cases need: the stores, the rules, the policy and the clock."""

    routings: RoutingRepository
    partners: PartnerDirectory
    rules: RuleBook
    policy: Policy
    clock: Clock = utc_now
    #: Seals each offer's content for its partner; without it offers carry no content.
    keys: KeyReader | None = None
    #: Serialises writes to one case within this process.
    locks: CaseLocks = field(default_factory=CaseLocks)


Change = Callable[[CaseRouting, datetime], list[EventPayload]]


class ConcurrentChangeError(RuntimeError):
    """The routing kept changing under us; the caller may retry later."""


def _events(
    payloads: Sequence[EventPayload], case_id: str, traceparent: str | None
) -> list[CloudEvent]:
    return [
        make_event(p, source=SOURCE, subject=case_id, traceparent=traceparent) for p in payloads
    ]


async def seal_offers(
    ctx: Referrals, routing: CaseRouting, payloads: Sequence[EventPayload]
) -> list[EventPayload]:
    """Give each offer its content: the minimised view, sealed for that referral's partner."""
    offers = [p for p in payloads if isinstance(p, ReferralOffered)]
    if not offers or ctx.keys is None or routing.erased:
        return list(payloads)
    try:
        case_key = await ctx.keys.get(routing.case_id)
    except CaseKeyMissingError:
        return list(payloads)  # erased meanwhile: nothing left to share
    sealed: list[EventPayload] = []
    for payload in payloads:
        if isinstance(payload, ReferralOffered):
            referral = routing.referral(payload.referral_id)
            view = minimised_view(
                routing.case, referral.handoff.fields, referral.claim_indexes, case_key.decrypt
            )
            content = seal_content(referral_key(case_key, referral.id), view)
            payload = payload.model_copy(update={"content": content})
        sealed.append(payload)
    return sealed


#: What a partner's sealed text reads as once the case's key is gone.
ERASED_NOTE = "(erased)"


async def seal_note(ctx: Referrals, case_id: str, text: str | None) -> str | None:
    """A partner's free text sealed with the case's data key, before it is stored or put
    in an event (it may name the worker). None when there is no text, or no key to seal
    it with (the case was erased, or no key reader is configured): partner text is never
    kept in clear."""
    if not text or ctx.keys is None:
        return None
    try:
        key = await ctx.keys.get(case_id)
    except CaseKeyMissingError:
        return None
    return key.encrypt(PARTNER_NOTE_FIELD, text)


def open_note(key: DataKey | None, token: str) -> str:
    """A partner's sealed text in clear; `ERASED_NOTE` without the case's key (erased)."""
    if key is None:
        return ERASED_NOTE
    try:
        return key.decrypt(PARTNER_NOTE_FIELD, token)
    except ValueError:  # not sealed by this case's key: show nothing of it
        return ERASED_NOTE


async def _case_id_of(ctx: Referrals, referral_id: str) -> str:
    routing = await ctx.routings.by_referral(referral_id)
    if routing is None:
        raise ReferralNotFoundError(referral_id)
    return routing.case_id


async def apply(
    ctx: Referrals,
    routing_or_id: str,
    change: Change,
    *,
    dedupe_key: str | None = None,
    traceparent: str | None = None,
    by_referral: bool = False,
) -> CaseRouting:
    """Read, change and write one routing, retrying when another writer got there first.

    With `dedupe_key` the change is applied at most once: the key is stored with it.
    Within this process the case is locked for the whole read-change-write (see
    `CaseLocks`); the version check guards against other processes.
    """
    case_id = routing_or_id
    if by_referral:
        found = await ctx.routings.by_referral(routing_or_id)
        if found is None:
            raise ReferralNotFoundError(routing_or_id)
        case_id = found.case_id
    async with ctx.locks.hold(case_id):
        for _ in range(10):
            routing = await ctx.routings.get(case_id)
            if routing is None:
                raise PermanentEventError(f"no routing for case {case_id}")
            if dedupe_key is not None and routing.has_processed(dedupe_key):
                return routing
            version = routing.version
            payloads = await seal_offers(ctx, routing, change(routing, ctx.clock()))
            if dedupe_key is not None:
                routing.processed.append(dedupe_key)
            events = _events(payloads, routing.case_id, traceparent)
            if await ctx.routings.save(routing, version, events):
                return routing
    raise ConcurrentChangeError(f"routing {case_id} kept changing")


async def _partners_for(ctx: Referrals, routing: CaseRouting) -> Mapping[str, Sequence[Partner]]:
    return await ctx.partners.in_countries(routing.jurisdictions())


# --- events from intake --------------------------------------------------------------------


async def on_case_submitted(event: CloudEvent, ctx: Referrals) -> None:
    """Route a new case: each claim to its forum, each jurisdiction to a partner."""
    case = parse_payload(event, CaseSubmitted)
    now = ctx.clock()
    routing = CaseRouting.new(case, ctx.rules, now)
    routing.processed.append(event.dedupe_key)
    payloads = routing.route(await _partners_for(ctx, routing), ctx.policy, now)
    payloads = await seal_offers(ctx, routing, payloads)
    # A redelivered `case submitted` finds the routing already stored and changes nothing.
    await ctx.routings.insert(routing, _events(payloads, case.case_id, event.traceparent))


async def _on_case_event(event: CloudEvent, ctx: Referrals, case_id: str, change: Change) -> None:
    await apply(ctx, case_id, change, dedupe_key=event.dedupe_key, traceparent=event.traceparent)


async def on_case_details_corrected(event: CloudEvent, ctx: Referrals) -> None:
    """The NGO corrected the case: claims are routed again on the corrected facts."""
    payload = parse_payload(event, CaseDetailsCorrected)
    # Corrected claims may be heard anywhere the rules know of, not only where they were.
    partners = await ctx.partners.in_countries({rule.jurisdiction for rule in ctx.rules.rule})
    await _on_case_event(
        event,
        ctx,
        payload.case_id,
        lambda r, now: r.correct(payload, ctx.rules, partners, ctx.policy, now),
    )


async def on_consent_recorded(event: CloudEvent, ctx: Referrals) -> None:
    """A new consent: routing resumes where it now may."""
    payload = parse_payload(event, ConsentRecorded)
    routing = await ctx.routings.get(payload.case_id)
    partners = await _partners_for(ctx, routing) if routing else {}
    await _on_case_event(
        event,
        ctx,
        payload.case_id,
        lambda r, now: r.record_consent(payload.consent, partners, ctx.policy, now),
    )


async def on_consent_withdrawn(event: CloudEvent, ctx: Referrals) -> None:
    """A consent withdrawn: the referrals it allowed are withdrawn and the partners told."""
    payload = parse_payload(event, ConsentWithdrawn)
    routing = await ctx.routings.get(payload.case_id)
    partners = await _partners_for(ctx, routing) if routing else {}
    await _on_case_event(
        event,
        ctx,
        payload.case_id,
        lambda r, now: r.withdraw_consent(
            payload.consent_id, payload.withdrawn_at, partners, ctx.policy, now
        ),
    )


async def on_case_closed(event: CloudEvent, ctx: Referrals) -> None:
    """The NGO closed the case: open referrals are withdrawn, reminders stop."""
    payload = parse_payload(event, CaseClosed)
    await _on_case_event(event, ctx, payload.case_id, lambda r, now: r.close_case(now))


async def on_case_erased(event: CloudEvent, ctx: Referrals) -> None:
    """The worker's data was erased: withdraw everything and drop the sealed fields."""
    payload = parse_payload(event, CaseErased)
    await _on_case_event(event, ctx, payload.case_id, lambda r, now: r.erase(now))


# --- the partner's commands ----------------------------------------------------------------


# `person_id`: the person who acted through the console; None for a system's API key.


async def accept(
    ctx: Referrals, referral_id: str, partner_id: str, person_id: str | None = None
) -> CaseRouting:
    """The partner accepts an offered referral."""
    return await apply(
        ctx,
        referral_id,
        lambda r, now: r.accept(referral_id, partner_id, now, person_id),
        by_referral=True,
    )


async def decline(
    ctx: Referrals, referral_id: str, partner_id: str, reason: str, person_id: str | None = None
) -> CaseRouting:
    """The partner declines; the next eligible partner is offered the claims. The
    reason is sealed with the case's key (see `seal_note`)."""
    routing = await ctx.routings.by_referral(referral_id)
    if routing is None:
        raise ReferralNotFoundError(referral_id)
    partners = await _partners_for(ctx, routing)
    note = await seal_note(ctx, routing.case_id, reason)
    return await apply(
        ctx,
        referral_id,
        lambda r, now: r.decline(
            referral_id, partner_id, note, partners, ctx.policy, now, person_id
        ),
        by_referral=True,
    )


async def progress(
    ctx: Referrals,
    referral_id: str,
    partner_id: str,
    report: Progress,
    person_id: str | None = None,
) -> CaseRouting:
    """The partner reports progress; its note is sealed with the case's key."""
    if report.note is not None:
        case_id = await _case_id_of(ctx, referral_id)
        report = report.model_copy(update={"note": await seal_note(ctx, case_id, report.note)})
    return await apply(
        ctx,
        referral_id,
        lambda r, now: r.progress(referral_id, partner_id, report, now, person_id),
        by_referral=True,
    )


async def close(
    ctx: Referrals,
    referral_id: str,
    partner_id: str,
    outcome: Outcome,
    amounts: Sequence[Money],
    person_id: str | None = None,
) -> CaseRouting:
    """The partner closes the referral with its outcome."""
    return await apply(
        ctx,
        referral_id,
        lambda r, now: r.close_referral(referral_id, partner_id, outcome, amounts, now, person_id),
        by_referral=True,
    )


async def hand_on(
    ctx: Referrals,
    referral_id: str,
    partner_id: str,
    to_partner_id: str,
    claim_indexes: Sequence[int],
    reason: str,
    person_id: str | None = None,
) -> CaseRouting:
    """Hand claims of a referral on to another partner (e.g. back to Indonesia)."""
    to = await ctx.partners.by_id(to_partner_id)
    if to is None:
        raise TransitionError(f"no active partner {to_partner_id}")
    note = await seal_note(ctx, await _case_id_of(ctx, referral_id), reason)
    return await apply(
        ctx,
        referral_id,
        lambda r, now: r.hand_on(
            referral_id, partner_id, to, claim_indexes, note, ctx.policy, now, person_id
        ),
        by_referral=True,
    )


# --- time ----------------------------------------------------------------------------------


def _tick(
    routing: CaseRouting,
    now: datetime,
    *,
    partners: Mapping[str, Sequence[Partner]],
    policy: Policy,
) -> list[EventPayload]:
    return routing.tick(partners, policy, now)


async def run_due(ctx: Referrals) -> int:
    """Expire overdue offers (re-routing them) and send due reminders; returns cases touched.

    Driven by the stored schedule (`next_due_at`), so it survives restarts; the version
    check makes each expiry and reminder happen once even with two schedulers running.
    """
    now = ctx.clock()
    touched = 0
    for case_id in await ctx.routings.due(now):
        routing = await ctx.routings.get(case_id)
        if routing is None:
            continue
        partners = await _partners_for(ctx, routing)
        try:
            await apply(ctx, case_id, partial(_tick, partners=partners, policy=ctx.policy))
        except ConcurrentChangeError:
            log.warning("scheduled work postponed: routing busy", case_id=case_id)
            continue
        touched += 1
    return touched
