"""Referral's use cases: each reads one case's routing, lets the domain change it, and
writes it back with the events it caused in the same single-document update (the shared
unit of work: version-checked, retried when another writer got there first, once per
event key).

A partner's load is counted on the partner's own document (`open`), each open referral's
claim kept in a small document of its own (see `partner_load`). The room a new offer
needs is claimed before the routing's write (a full partner is left out and the domain
decides again); after the write, a referral the write closed is released, and so is a
claim of this run that the stored routing does not hold (its write was lost, refused or
decided otherwise). Claims are keyed by the referral and held by the runs that made them:
a run lets go only of its own claim, and a referral stops counting when no run holds it
or once it is closed, so one write's release never undoes another's claim.
What a crashed instance leaves behind is put right by the periodic reconciler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

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
from lintas_shared.ids import new_id
from lintas_shared.logging import get_logger
from lintas_shared.topics import REFERRALS
from lintas_shared.unit_of_work import (
    ContentionError,
    Decision,
    DocumentNotFoundError,
    DuplicateDocumentError,
    Outgoing,
    UnitOfWork,
)
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
from lintas_referral.partner_load import LoadClaim

SOURCE = "/lintas/referral"
Clock = Callable[[], datetime]
log = get_logger(__name__)
#: How often one change may find a chosen partner full before it gives up.
FULL_PARTNER_ATTEMPTS = 10


def utc_now() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


class PartnerDirectory(Protocol):
    """The legal partners, with their current load, and the claims on their capacity."""

    async def in_countries(self, countries: Iterable[str]) -> Mapping[str, Sequence[Partner]]:
        """Active partners of each country."""
        ...

    async def by_id(self, partner_id: str) -> Partner | None:
        """One active partner."""
        ...

    async def claim(self, partner_id: str, claim: LoadClaim, capacity: int | None) -> bool:
        """Count the referral in the partner's load if it is below `capacity` (None: no
        limit), held by `claim.owner`; True if counted (now, or before: then this owner
        holds it too), False if full."""
        ...

    async def release(self, partner_id: str, referral_id: str, owner: str | None = None) -> None:
        """Stop counting the referral in the partner's load (idempotent); with `owner`,
        let go of that owner's claim only: it stops counting once no owner is left."""
        ...


class KeyReader(Protocol):
    """Reads a case's data key (the key vault); raises CaseKeyMissingError after erasure."""

    async def get(self, case_id: str) -> DataKey:
        """The case's key (kept a while once read: for sealing)."""
        ...

    async def current(self, case_id: str) -> DataKey:
        """The case's key as the vault holds it now (for what a partner is given)."""
        ...

    def forget(self, case_id: str) -> None:
        """Drop the case's key from memory (its case was erased)."""
        ...


class RoutingRepository(Protocol):
    """One routing document per case: its unit of work and the queries not by `_id`."""

    @property
    def work(self) -> UnitOfWork[CaseRouting]:
        """Reads, changes (version-checked, once per event key) and adds routings."""
        ...

    async def get(self, case_id: str) -> CaseRouting | None:
        """The routing of a case."""
        ...

    async def case_of(self, referral_id: str) -> str | None:
        """The case holding a referral."""
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


Partners = Mapping[str, Sequence[Partner]]
Change = Callable[[CaseRouting, datetime, Partners], list[EventPayload]]
#: The countries whose partners a change may offer claims to (None: it offers none).
Countries = Callable[[CaseRouting], Iterable[str]] | None


class ConcurrentChangeError(RuntimeError):
    """The routing kept changing under us; the caller may retry later."""


def _events(
    payloads: Sequence[EventPayload], case_id: str, traceparent: str | None
) -> list[CloudEvent]:
    return [
        make_event(p, source=SOURCE, subject=case_id, traceparent=traceparent) for p in payloads
    ]


def _outgoing(events: Iterable[CloudEvent]) -> list[Outgoing]:
    return [Outgoing(REFERRALS, e) for e in events]


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
    case_id = await ctx.routings.case_of(referral_id)
    if case_id is None:
        raise ReferralNotFoundError(referral_id)
    return case_id


def _without(partners: Partners, full: set[str]) -> Partners:
    """The partners, those found full counted as full (the domain passes them over)."""
    if not full:
        return partners
    return {
        country: [
            replace(p, open_referrals=max(p.capacity, p.open_referrals)) if p.id in full else p
            for p in found
        ]
        for country, found in partners.items()
    }


#: (partner id, referral id) of an open referral.
OpenKey = tuple[str, str]


def _open(routing: CaseRouting) -> set[OpenKey]:
    """The routing's open referrals, by partner."""
    return {(r.partner_organisation_id, r.id) for r in routing.referrals if r.is_open}


class _Load:
    """The partner-load claims of one use case, released when not needed after all."""

    def __init__(self, ctx: Referrals, case_id: str, *, limited: bool) -> None:
        self._ctx = ctx
        self._case_id = case_id
        self._limited = limited
        #: This run's claims are its own: only its own release undoes them.
        self.owner = new_id()
        self.claimed: set[OpenKey] = set()
        #: The open referrals of the state the last decision started from.
        self.before: set[OpenKey] = set()

    async def decide(
        self,
        current: CaseRouting,
        countries: Countries,
        change: Change,
        traceparent: str | None,
    ) -> tuple[CaseRouting, list[CloudEvent]]:
        """Let the domain change a copy of `current`; claim room with each partner it
        newly offers claims to, and decide again without a partner found full."""
        self.before = _open(current)
        full: set[str] = set()
        for _ in range(FULL_PARTNER_ATTEMPTS):
            routing = current.model_copy(deep=True)
            found = await self._ctx.partners.in_countries(countries(routing)) if countries else {}
            capacity = {p.id: p.capacity for ps in found.values() for p in ps}
            payloads = change(routing, self._ctx.clock(), _without(found, full))
            refused = await self._claim(_open(routing) - self.before, capacity)
            if not refused:
                payloads = await seal_offers(self._ctx, routing, payloads)
                return routing, _events(payloads, routing.case_id, traceparent)
            full |= refused
        raise ConcurrentChangeError(f"the partners of case {self._case_id} kept filling up")

    async def _claim(self, offers: set[OpenKey], capacity: Mapping[str, int]) -> set[str]:
        refused: set[str] = set()
        for partner_id, referral_id in sorted(offers):
            # A partner not among the country's (chosen by a person: a hand-on) has no
            # limit here; one the routing chose is claimed only while it has room.
            limit = capacity.get(partner_id) if self._limited else None
            claim = LoadClaim(self._case_id, referral_id, self.owner, self._ctx.clock())
            if await self._ctx.partners.claim(partner_id, claim, limit):
                self.claimed.add((partner_id, referral_id))
            else:
                refused.add(partner_id)
        return refused

    async def settle(self, stored: CaseRouting | None) -> None:
        """After the write (or its failure), as the stored routing says: release each
        referral open before and closed now (for good: a closed referral never opens
        again), and each claim of this run the routing does not hold (this run's only:
        another run may have claimed the same offer since)."""
        keep = set() if stored is None else _open(stored)
        for partner_id, referral_id in sorted(self.before - keep):
            await self._ctx.partners.release(partner_id, referral_id)
        for partner_id, referral_id in sorted(self.claimed - keep - self.before):
            await self._ctx.partners.release(partner_id, referral_id, self.owner)


async def apply(
    ctx: Referrals,
    case_id: str,
    change: Change,
    *,
    countries: Countries = None,
    event_key: str | None = None,
    traceparent: str | None = None,
    limited: bool = True,
) -> CaseRouting:
    """Read, change and write one routing with the shared unit of work (retried when
    another writer got there first; with `event_key`, applied at most once).

    `countries`: whose partners the change may offer claims to (read before each
    decision). `limited`: a new partner is claimed only while it has room.
    """
    load = _Load(ctx, case_id, limited=limited)

    async def decide(current: CaseRouting) -> Decision[CaseRouting] | None:
        if event_key is not None and current.has_processed(event_key):
            return None  # processed before the unit of work kept the keys
        routing, events = await load.decide(current, countries, change, traceparent)
        routing.version = current.version + 1
        return Decision(routing, _outgoing(events))

    work = ctx.routings.work
    try:
        committed = await work.change(case_id, decide, event_key=event_key)
    except DocumentNotFoundError:
        raise PermanentEventError(f"no routing for case {case_id}") from None
    except ContentionError as exc:
        await _settle_after_failure(load, work, case_id)
        raise ConcurrentChangeError(str(exc)) from exc
    except BaseException:
        await _settle_after_failure(load, work, case_id)
        raise
    await load.settle(committed.aggregate)
    return committed.aggregate


async def _settle_after_failure(load: _Load, work: UnitOfWork[CaseRouting], case_id: str) -> None:
    """Release what a failed change claimed, as the stored routing says; when the store
    cannot say (it is away), the claims stay: a partner counted once too often (room
    kept free) rather than offered more than its capacity, until the reconciler
    (`partner_load`) drops them."""
    if not load.claimed:
        return
    try:
        stored = await work.get(case_id)
    except Exception as exc:
        log.warning("partner load not released", case_id=case_id, error=type(exc).__name__)
        return
    await load.settle(stored)


def _jurisdictions(routing: CaseRouting) -> list[str]:
    return routing.jurisdictions()


# --- events from intake --------------------------------------------------------------------


async def on_case_submitted(event: CloudEvent, ctx: Referrals) -> None:
    """Route a new case: each claim to its forum, each jurisdiction to a partner."""
    case = parse_payload(event, CaseSubmitted)
    routing = CaseRouting.new(case, ctx.rules, ctx.clock())
    routing.processed.append(event.dedupe_key)
    routing.version = 1
    load = _Load(ctx, case.case_id, limited=True)

    def route(r: CaseRouting, now: datetime, partners: Partners) -> list[EventPayload]:
        return r.route(partners, ctx.policy, now)

    work = ctx.routings.work
    try:
        routed, events = await load.decide(routing, _jurisdictions, route, event.traceparent)
        # A redelivered `case submitted` finds the routing already stored: nothing changes.
        await work.add(routed, _outgoing(events))
    except DuplicateDocumentError:
        await load.settle(await work.get(case.case_id))
    except BaseException:
        await _settle_after_failure(load, work, case.case_id)
        raise


async def _on_case_event(
    event: CloudEvent,
    ctx: Referrals,
    case_id: str,
    change: Change,
    countries: Countries = _jurisdictions,
) -> None:
    await apply(
        ctx,
        case_id,
        change,
        countries=countries,
        event_key=event.dedupe_key,
        traceparent=event.traceparent,
    )


async def on_case_details_corrected(event: CloudEvent, ctx: Referrals) -> None:
    """The NGO corrected the case: claims are routed again on the corrected facts."""
    payload = parse_payload(event, CaseDetailsCorrected)
    # Corrected claims may be heard anywhere the rules know of, not only where they were.
    everywhere = {rule.jurisdiction for rule in ctx.rules.rule}
    await _on_case_event(
        event,
        ctx,
        payload.case_id,
        lambda r, now, partners: r.correct(payload, ctx.rules, partners, ctx.policy, now),
        lambda _r: everywhere,
    )


async def on_consent_recorded(event: CloudEvent, ctx: Referrals) -> None:
    """A new consent: routing resumes where it now may."""
    payload = parse_payload(event, ConsentRecorded)
    await _on_case_event(
        event,
        ctx,
        payload.case_id,
        lambda r, now, partners: r.record_consent(payload.consent, partners, ctx.policy, now),
    )


async def on_consent_withdrawn(event: CloudEvent, ctx: Referrals) -> None:
    """A consent withdrawn: the referrals it allowed are withdrawn and the partners told."""
    payload = parse_payload(event, ConsentWithdrawn)
    await _on_case_event(
        event,
        ctx,
        payload.case_id,
        lambda r, now, partners: r.withdraw_consent(
            payload.consent_id, payload.withdrawn_at, partners, ctx.policy, now
        ),
    )


async def on_case_closed(event: CloudEvent, ctx: Referrals) -> None:
    """The NGO closed the case: open referrals are withdrawn, reminders stop."""
    payload = parse_payload(event, CaseClosed)
    await _on_case_event(
        event, ctx, payload.case_id, lambda r, now, _p: r.close_case(now), countries=None
    )


async def on_case_erased(event: CloudEvent, ctx: Referrals) -> None:
    """The worker's data was erased: withdraw everything and drop the sealed fields."""
    payload = parse_payload(event, CaseErased)
    if ctx.keys is not None:
        ctx.keys.forget(payload.case_id)  # gone from the vault: kept nowhere here either
    await _on_case_event(
        event, ctx, payload.case_id, lambda r, now, _p: r.erase(now), countries=None
    )


# --- the partner's commands ----------------------------------------------------------------


# `person_id`: the person who acted through the console; None for a system's API key.


async def accept(
    ctx: Referrals, referral_id: str, partner_id: str, person_id: str | None = None
) -> CaseRouting:
    """The partner accepts an offered referral."""
    return await apply(
        ctx,
        await _case_id_of(ctx, referral_id),
        lambda r, now, _p: r.accept(referral_id, partner_id, now, person_id),
    )


async def decline(
    ctx: Referrals, referral_id: str, partner_id: str, reason: str, person_id: str | None = None
) -> CaseRouting:
    """The partner declines; the next eligible partner is offered the claims. The
    reason is sealed with the case's key (see `seal_note`)."""
    case_id = await _case_id_of(ctx, referral_id)
    note = await seal_note(ctx, case_id, reason)
    return await apply(
        ctx,
        case_id,
        lambda r, now, partners: r.decline(
            referral_id, partner_id, note, partners, ctx.policy, now, person_id
        ),
        countries=_jurisdictions,
    )


async def progress(
    ctx: Referrals,
    referral_id: str,
    partner_id: str,
    report: Progress,
    person_id: str | None = None,
) -> CaseRouting:
    """The partner reports progress; its note is sealed with the case's key."""
    case_id = await _case_id_of(ctx, referral_id)
    if report.note is not None:
        report = report.model_copy(update={"note": await seal_note(ctx, case_id, report.note)})
    return await apply(
        ctx,
        case_id,
        lambda r, now, _p: r.progress(referral_id, partner_id, report, now, person_id),
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
        await _case_id_of(ctx, referral_id),
        lambda r, now, _p: r.close_referral(
            referral_id, partner_id, outcome, amounts, now, person_id
        ),
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
    """Hand claims of a referral on to another partner (e.g. back to Indonesia). The
    lawyer chooses the partner: it is counted in its load whether it has room or not."""
    to = await ctx.partners.by_id(to_partner_id)
    if to is None:
        raise TransitionError(f"no active partner {to_partner_id}")
    case_id = await _case_id_of(ctx, referral_id)
    note = await seal_note(ctx, case_id, reason)
    return await apply(
        ctx,
        case_id,
        lambda r, now, _p: r.hand_on(
            referral_id, partner_id, to, claim_indexes, note, ctx.policy, now, person_id
        ),
        limited=False,
    )


# --- time ----------------------------------------------------------------------------------


async def run_due(ctx: Referrals, limit: int = 100) -> int:
    """Expire overdue offers (re-routing them) and send due reminders; returns cases touched.

    Driven by the stored schedule (each routing's indexed `next_due_at`), so it survives
    restarts; the version check makes each expiry and reminder happen once even with two
    schedulers running.
    """
    now = ctx.clock()
    touched = 0
    for case_id in await ctx.routings.due(now, limit):
        try:
            await apply(
                ctx,
                case_id,
                lambda r, at, partners: r.tick(partners, ctx.policy, at),
                countries=_jurisdictions,
            )
        except ConcurrentChangeError:
            log.warning("scheduled work postponed: routing busy", case_id=case_id)
            continue
        except PermanentEventError:
            continue  # gone meanwhile
        touched += 1
    return touched
