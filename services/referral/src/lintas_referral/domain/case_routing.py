"""One case's routing: its claims' forums, the consents, the referrals and their lifecycle.

`CaseRouting` is the aggregate stored as one document. Every change is a method that
returns the events it causes; the caller writes the new state and those events in one
single-document update (the outbox), guarded by the version it read. Pure: no I/O, the
clock and the partners' load are passed in.

Referral lifecycle: offered → accepted | declined | expired | withdrawn;
accepted → in_progress → closed (accepted or in_progress may also be withdrawn).
A declined or expired offer goes to the next eligible partner in that country; when none
is left the jurisdiction is unassigned and the NGO sees why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from lintas_shared.events import (
    CaseDetailsCorrected,
    CaseRoutingBlocked,
    CaseSubmitted,
    ConsentSummary,
    DeadlineApproaching,
    DeadlineSummary,
    EventPayload,
    ForumSummary,
    ReferralAccepted,
    ReferralClosed,
    ReferralDeclined,
    ReferralExpired,
    ReferralOffered,
    ReferralProgressed,
    ReferralWithdrawn,
)
from lintas_shared.ids import deterministic_id
from lintas_shared.values import Money
from pydantic import BaseModel, ConfigDict, Field

from lintas_referral.domain.forums import ClaimRouting, route_claims
from lintas_referral.domain.handoff import Manifest
from lintas_referral.domain.routing import Partner, choose_partner
from lintas_referral.domain.rules import RuleBook

ReferralStatus = Literal[
    "offered", "accepted", "in_progress", "declined", "expired", "withdrawn", "closed"
]
OPEN_STATUSES: frozenset[str] = frozenset({"offered", "accepted", "in_progress"})
#: Statuses after which the same partner is not offered the claims again.
REFUSED_STATUSES: frozenset[str] = frozenset({"declined", "expired"})
Outcome = Literal["recovered", "settled", "unsuccessful", "withdrawn", "unreachable"]
DEFAULT_REMINDER_DAYS: tuple[int, ...] = (30, 7, 1)


class TransitionError(Exception):
    """The referral is not in a state that allows this change."""


class ReferralNotFoundError(Exception):
    """No such referral for this partner (answers 404: never reveal another's)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ConsentRecord(_Model):
    """A consent record as routing needs it: what it covers, and whether it still holds."""

    consent_id: str
    purposes: tuple[str, ...]
    share_with_countries: tuple[str, ...] = ()
    share_with_organisations: tuple[str, ...] = ()
    withdrawn_at: datetime | None = None

    @classmethod
    def from_summary(cls, summary: ConsentSummary) -> ConsentRecord:
        """From the consent summary carried by intake's events."""
        return cls(
            consent_id=summary.consent_id,
            purposes=tuple(p.value for p in summary.purposes),
            share_with_countries=summary.share_with_countries,
            share_with_organisations=summary.share_with_organisations,
        )

    def covers(self, purpose: str, partner: Partner) -> bool:
        """Active, for this purpose, and naming the partner's country or the partner."""
        return (
            self.withdrawn_at is None
            and purpose in self.purposes
            and (
                partner.country in self.share_with_countries
                or partner.id in self.share_with_organisations
            )
        )


class Handoff(_Model):
    """What was shared with whom, why, and under which consent."""

    legal_basis: str
    purpose: str
    recipient_organisation_id: str
    recipient_country: str
    consent_id: str
    fields: tuple[str, ...]
    claim_indexes: tuple[int, ...]
    at: datetime


class HistoryEntry(_Model):
    """One step in a referral's life."""

    at: datetime
    status: str
    reason: str | None = Field(
        default=None, description="Why, in the system's words (never a partner's text)"
    )
    note: str | None = Field(
        default=None,
        description="The partner's own words (a decline's or a hand-on's reason), sealed "
        "with the case's data key (`enc:v1:`, field PARTNER_NOTE_FIELD)",
    )
    person_id: str | None = Field(
        default=None,
        description="The person who took this step (a pseudonymous id), when one did "
        "through the console; null for an API key or the service itself",
    )


class Progress(_Model):
    """The latest progress a partner reported."""

    filed_at_forum: bool = False
    hearing_on: date | None = None
    documents_needed: bool = False
    note: str | None = Field(
        default=None,
        description="The partner's note, sealed with the case's data key (`enc:v1:`)",
    )
    at: datetime


class Referral(_Model):
    """A handoff of a jurisdiction's claims to one partner, and its lifecycle."""

    id: str
    jurisdiction: str
    partner_organisation_id: str
    claim_indexes: tuple[int, ...]
    status: ReferralStatus
    offered_at: datetime
    expires_at: datetime
    handoff: Handoff
    history: list[HistoryEntry] = Field(default_factory=list)
    reason: str | None = None
    progress: Progress | None = None
    outcome: Outcome | None = None
    amounts_recovered: tuple[Money, ...] = ()
    handed_on_from: str | None = None

    @property
    def is_open(self) -> bool:
        """Offered, accepted or in progress."""
        return self.status in OPEN_STATUSES

    @property
    def closed_at(self) -> datetime | None:
        """When the partner closed the referral (None unless it is closed)."""
        if self.status != "closed":
            return None
        return next((h.at for h in reversed(self.history) if h.status == "closed"), None)

    def shared_until(self, retention: timedelta) -> datetime | None:
        """Until when a closed referral still shows the case's personal data."""
        closed_at = self.closed_at
        return None if closed_at is None else closed_at + retention

    def shares_personal_data(self, now: datetime, retention: timedelta) -> bool:
        """The partner may see the case's shared fields and its content key.

        While the referral is open; after the partner closed it only for `retention`
        (then only the outcome stays); never once declined, expired or withdrawn.
        """
        if self.is_open:
            return True
        until = self.shared_until(retention)
        return until is not None and now < until


class Reminder(_Model):
    """One scheduled reminder before a filing deadline; sent at most once."""

    id: str
    claim_index: int
    jurisdiction: str
    forum_code: str
    deadline: date
    days_before: int
    due_at: datetime
    verified: bool
    state: Literal["scheduled", "sent", "cancelled"] = "scheduled"


class Block(_Model):
    """Why a jurisdiction's claims are not with a partner."""

    status: Literal["awaiting_consent", "unassigned"]
    reason: str


class Policy(_Model):
    """The knobs of routing: time to accept an offer, reminder days, manifest."""

    offer_ttl: timedelta = timedelta(hours=72)
    #: How long a partner keeps the personal-data view of a referral it closed.
    closed_view_retention: timedelta = timedelta(days=30)
    reminder_days: tuple[int, ...] = DEFAULT_REMINDER_DAYS
    manifest: Manifest


class CaseRouting(_Model):
    """The aggregate: everything referral holds about one case."""

    case_id: str
    organisation_id: str
    reference: str
    language: str
    case: dict[str, Any]
    claims: list[ClaimRouting]
    consents: list[ConsentRecord]
    referrals: list[Referral] = Field(default_factory=list)
    blocked: dict[str, Block] = Field(default_factory=dict)
    status: str = "routing"
    reason: str | None = None
    reminders: list[Reminder] = Field(default_factory=list)
    closed: bool = False
    erased: bool = False
    processed: list[str] = Field(default_factory=list)
    version: int = 0
    created_at: datetime
    updated_at: datetime

    # --- creation -----------------------------------------------------------------------

    @classmethod
    def new(cls, case: CaseSubmitted, rules: RuleBook, now: datetime) -> CaseRouting:
        """A case as submitted, its claims routed to forums (no partner chosen yet)."""
        return cls(
            case_id=case.case_id,
            organisation_id=case.organisation_id,
            reference=case.reference,
            language=case.worker.preferred_language,
            case=case.model_dump(mode="json"),
            claims=route_claims(case, rules, now.date()),
            consents=[ConsentRecord.from_summary(case.consent)],
            created_at=now,
            updated_at=now,
        )

    # --- queries ------------------------------------------------------------------------

    def referral(self, referral_id: str, partner_id: str | None = None) -> Referral:
        """The referral with this id, offered to `partner_id` when given."""
        for r in self.referrals:
            if r.id == referral_id and partner_id in (None, r.partner_organisation_id):
                return r
        raise ReferralNotFoundError(referral_id)

    def jurisdictions(self) -> list[str]:
        """Countries whose forums hear at least one of the claims, in a stable order."""
        return sorted(
            {c.jurisdiction for c in self.claims if c.status == "routed" and c.jurisdiction}
        )

    def claims_in(self, jurisdiction: str) -> list[ClaimRouting]:
        """The routed claims heard in `jurisdiction`."""
        return [c for c in self.claims if c.status == "routed" and c.jurisdiction == jurisdiction]

    @property
    def open_partner_ids(self) -> list[str]:
        """Partners holding an open referral of this case (their load)."""
        return sorted({r.partner_organisation_id for r in self.referrals if r.is_open})

    @property
    def next_due_at(self) -> datetime | None:
        """The earliest time something must happen: an offer expires or a reminder is due."""
        times = [r.expires_at for r in self.referrals if r.status == "offered"]
        times += [m.due_at for m in self.reminders if m.state == "scheduled"]
        return min(times) if times else None

    def has_processed(self, dedupe_key: str) -> bool:
        """This event was already applied."""
        return dedupe_key in self.processed

    # --- routing ------------------------------------------------------------------------

    def route(
        self, partners: Mapping[str, Sequence[Partner]], policy: Policy, now: datetime
    ) -> list[EventPayload]:
        """Offer every jurisdiction without an open or finished referral to a partner."""
        events: list[EventPayload] = []
        if self.closed or self.erased:
            return events
        purpose = policy.manifest.purpose
        for country in self.jurisdictions():
            mine = [r for r in self.referrals if r.jurisdiction == country]
            if any(r.is_open or r.status == "closed" for r in mine):
                self.blocked.pop(country, None)
                continue
            claims = self.claims_in(country)
            types = {c.claim_type for c in claims}
            refused = {r.partner_organisation_id for r in mine if r.status in REFUSED_STATUSES}
            available = [
                p
                for p in partners.get(country, ())
                if p.id not in refused and p.can_take(types, self.language)
            ]
            consented = [p for p in available if self._consent_for(purpose, p) is not None]
            chosen = choose_partner(
                consented, country=country, claim_types=types, language=self.language
            )
            if chosen is None:
                self.blocked[country] = self._why_blocked(country, purpose, available, refused)
                continue
            self.blocked.pop(country, None)
            events.append(self._offer(chosen, claims, policy, now))
        self._schedule_reminders(policy, now)
        events += self._refresh_status()
        self.updated_at = now
        return events

    def _consent_for(self, purpose: str, partner: Partner) -> ConsentRecord | None:
        for consent in self.consents:
            if consent.covers(purpose, partner):
                return consent
        return None

    def _why_blocked(
        self, country: str, purpose: str, available: Sequence[Partner], refused: set[str]
    ) -> Block:
        if available:
            active = [c for c in self.consents if c.withdrawn_at is None]
            if not any(purpose in c.purposes for c in active):
                return Block(
                    status="awaiting_consent",
                    reason=f"consent does not cover the purpose {purpose}",
                )
            return Block(
                status="awaiting_consent", reason=f"consent does not cover sharing with {country}"
            )
        if refused:
            return Block(
                status="unassigned",
                reason=f"every eligible legal partner in {country} declined or let the offer "
                "expire; a caseworker must find one",
            )
        return Block(
            status="unassigned", reason=f"no legal partner in {country} can take these claims now"
        )

    def _offer(
        self, partner: Partner, claims: Sequence[ClaimRouting], policy: Policy, now: datetime
    ) -> ReferralOffered:
        consent = self._consent_for(policy.manifest.purpose, partner)
        assert consent is not None
        indexes = tuple(c.claim_index for c in claims)
        referral = Referral(
            # Deterministic: a redelivered event that makes the same offer gets the same id.
            id=deterministic_id("referral", self.case_id, partner.id, str(len(self.referrals))),
            jurisdiction=partner.country,
            partner_organisation_id=partner.id,
            claim_indexes=indexes,
            status="offered",
            offered_at=now,
            expires_at=now + policy.offer_ttl,
            handoff=Handoff(
                legal_basis=policy.manifest.legal_basis,
                purpose=policy.manifest.purpose,
                recipient_organisation_id=partner.id,
                recipient_country=partner.country,
                consent_id=consent.consent_id,
                fields=policy.manifest.fields,
                claim_indexes=indexes,
                at=now,
            ),
            history=[HistoryEntry(at=now, status="offered")],
        )
        self.referrals.append(referral)
        lead = _lead_claim(claims)
        return ReferralOffered(
            referral_id=referral.id,
            case_id=self.case_id,
            partner_organisation_id=partner.id,
            country=partner.country,
            offered_at=now,
            forum=None
            if lead is None or lead.forum is None
            else ForumSummary(code=lead.forum.code, name=lead.forum.name, verified=lead.verified),
            deadline=None
            if lead is None or lead.deadline is None
            else DeadlineSummary(**lead.deadline.model_dump()),
        )

    def _refresh_status(self) -> list[EventPayload]:
        """Derive the case's status; announce a block the NGO has not been told of yet."""
        open_statuses = {r.status for r in self.referrals if r.is_open}
        unrouted = [c for c in self.claims if c.status != "routed"]
        reasons = [block.reason for _, block in sorted(self.blocked.items())]
        reasons += [f"claim {c.claim_index} ({c.claim_type}): {c.reason}" for c in unrouted]
        reason = "; ".join(reasons) or None
        if self.closed:
            status = "closed"
        elif "in_progress" in open_statuses:
            status = "in_progress"
        elif "accepted" in open_statuses:
            status = "accepted"
        elif "offered" in open_statuses:
            status = "referred"
        elif any(r.status == "closed" for r in self.referrals) and not self.blocked:
            status = "closed"
        elif any(b.status == "awaiting_consent" for b in self.blocked.values()):
            status = "awaiting_consent"
        else:
            status = "unassigned"
        changed = (status, reason) != (self.status, self.reason)
        self.status, self.reason = status, reason
        if changed and status in ("awaiting_consent", "unassigned"):
            return [
                CaseRoutingBlocked(
                    case_id=self.case_id,
                    status=status,
                    reason=reason or "no routing rule or partner covers this case",
                )
            ]
        return []

    # --- the partner's answers ----------------------------------------------------------

    def _change(
        self,
        referral: Referral,
        allowed: frozenset[str],
        status: ReferralStatus,
        now: datetime,
        reason: str | None = None,
        person_id: str | None = None,
        note: str | None = None,
    ) -> dict[str, Any]:
        if referral.status not in allowed:
            raise TransitionError(f"referral is {referral.status}; cannot become {status}")
        referral.status = status
        referral.reason = reason
        referral.history.append(
            HistoryEntry(at=now, status=status, reason=reason, note=note, person_id=person_id)
        )
        self.updated_at = now
        return {
            "referral_id": referral.id,
            "case_id": self.case_id,
            "partner_organisation_id": referral.partner_organisation_id,
            "country": referral.jurisdiction,
            "at": now,
            "reason": reason,
            "by_person_id": person_id,
        }

    def accept(
        self, referral_id: str, partner_id: str, now: datetime, person_id: str | None = None
    ) -> list[EventPayload]:
        """The partner takes the referral (`person_id`: who, when a person did)."""
        r = self.referral(referral_id, partner_id)
        change = self._change(r, frozenset({"offered"}), "accepted", now, person_id=person_id)
        events: list[EventPayload] = [ReferralAccepted(**change)]
        return events + self._refresh_status()

    def decline(
        self,
        referral_id: str,
        partner_id: str,
        note: str | None,
        partners: Mapping[str, Sequence[Partner]],
        policy: Policy,
        now: datetime,
        person_id: str | None = None,
    ) -> list[EventPayload]:
        """The partner declines; the next eligible partner is offered the claims.

        `note`: the partner's reason, already sealed with the case's key by the caller
        (this module does no I/O); it is stored and sent as it comes.
        """
        r = self.referral(referral_id, partner_id)
        change = self._change(
            r, frozenset({"offered"}), "declined", now, person_id=person_id, note=note
        )
        return [ReferralDeclined(**change, note=note), *self.route(partners, policy, now)]

    def progress(
        self,
        referral_id: str,
        partner_id: str,
        progress: Progress,
        now: datetime,
        person_id: str | None = None,
    ) -> list[EventPayload]:
        """The partner reports progress (filed, hearing date, documents needed)."""
        r = self.referral(referral_id, partner_id)
        change = self._change(
            r, frozenset({"accepted", "in_progress"}), "in_progress", now, person_id=person_id
        )
        r.progress = progress
        event = ReferralProgressed(
            **change,
            filed_at_forum=progress.filed_at_forum,
            hearing_on=progress.hearing_on,
            documents_needed=progress.documents_needed,
        )
        return [event, *self._refresh_status()]

    def close_referral(
        self,
        referral_id: str,
        partner_id: str,
        outcome: Outcome,
        amounts: Sequence[Money],
        now: datetime,
        person_id: str | None = None,
    ) -> list[EventPayload]:
        """The partner closes the referral with its outcome."""
        r = self.referral(referral_id, partner_id)
        change = self._change(
            r, frozenset({"accepted", "in_progress"}), "closed", now, person_id=person_id
        )
        r.outcome, r.amounts_recovered = outcome, tuple(amounts)
        self._cancel_reminders(r.jurisdiction)
        event = ReferralClosed(**change, outcome=outcome, amounts_recovered=tuple(amounts))
        return [event, *self._refresh_status()]

    def hand_on(
        self,
        referral_id: str,
        partner_id: str,
        to: Partner,
        claim_indexes: Sequence[int],
        note: str | None,
        policy: Policy,
        now: datetime,
        person_id: str | None = None,
    ) -> list[EventPayload]:
        """Hand claims on to a partner elsewhere (e.g. back to Indonesia); history is kept.

        `note`: the partner's reason, already sealed with the case's key by the caller;
        it goes into the new referral's first history entry, never into an event.

        Only claims of the caller's own referral, and never to the caller itself. No NGO
        approval is asked: the new offer is an ordinary `referral offered` event naming
        who handed it on, so the caseworker sees it on the case's timeline.
        """
        source = self.referral(referral_id, partner_id)
        if not source.is_open:
            raise TransitionError(f"referral is {source.status}; only an open one is handed on")
        if to.id == source.partner_organisation_id:
            raise TransitionError("a referral cannot be handed on to the partner holding it")
        foreign = sorted(set(claim_indexes) - set(source.claim_indexes))
        if foreign:
            raise TransitionError(
                f"claims {foreign} are not part of this referral; only its own claims "
                f"{list(source.claim_indexes)} can be handed on"
            )
        if self._consent_for(policy.manifest.purpose, to) is None:
            raise TransitionError(f"no active consent covers sharing with {to.country} ({to.id})")
        claims = [c for c in self.claims if c.claim_index in set(claim_indexes)]
        if not claims:
            raise TransitionError("name at least one claim of the case to hand on")
        for r in self.referrals:
            overlaps = bool(set(r.claim_indexes) & set(claim_indexes))
            if r.is_open and r.partner_organisation_id == to.id and overlaps:
                raise TransitionError(f"{to.id} already holds an open referral of these claims")
        event = self._offer(to, claims, policy, now)
        self.referrals[-1].handed_on_from = source.id
        self.referrals[-1].history[0].note = note
        self.referrals[-1].history[0].person_id = person_id
        handed_on = event.model_copy(update={"by_person_id": person_id})
        return [handed_on, *self._refresh_status()]

    # --- time ---------------------------------------------------------------------------

    def tick(
        self, partners: Mapping[str, Sequence[Partner]], policy: Policy, now: datetime
    ) -> list[EventPayload]:
        """Expire offers past their time and send reminders that are due."""
        events: list[EventPayload] = []
        expired = False
        for r in self.referrals:
            if r.status == "offered" and r.expires_at <= now:
                change = self._change(
                    r, frozenset({"offered"}), "expired", now, "not accepted in time"
                )
                events.append(ReferralExpired(**change))
                expired = True
        if expired:
            events += self.route(partners, policy, now)
        for m in self.reminders:
            if m.state != "scheduled" or m.due_at > now:
                continue
            if self.closed or self.erased or self._jurisdiction_closed(m.jurisdiction):
                m.state = "cancelled"
                continue
            m.state = "sent"
            events.append(
                DeadlineApproaching(
                    case_id=self.case_id,
                    referral_id=self._current_referral_id(m.jurisdiction),
                    forum_code=m.forum_code,
                    deadline=m.deadline,
                    days_before=m.days_before,
                    verified=m.verified,
                )
            )
        self.updated_at = now
        return events

    def _jurisdiction_closed(self, country: str) -> bool:
        mine = [r for r in self.referrals if r.jurisdiction == country]
        return any(r.status == "closed" for r in mine) and not any(r.is_open for r in mine)

    def _current_referral_id(self, country: str) -> str:
        mine = [r for r in self.referrals if r.jurisdiction == country]
        open_ = [r for r in mine if r.is_open]
        return (open_ or mine)[-1].id if (open_ or mine) else ""

    def _schedule_reminders(self, policy: Policy, now: datetime) -> None:
        # Scheduled once per claim deadline and threshold; ids make that idempotent.
        known = {m.id for m in self.reminders}
        for claim in self.claims:
            if claim.deadline is None or claim.forum is None or claim.jurisdiction is None:
                continue
            if claim.deadline_passed:
                continue  # already past on the day of routing: shown as passed, no alarms
            for days in policy.reminder_days:
                due = datetime.combine(claim.deadline.date - timedelta(days=days), time(), UTC)
                rid = f"{claim.claim_index}:{claim.deadline.date.isoformat()}:{days}"
                if rid in known or due < now - timedelta(days=1):
                    continue  # a threshold already long past is not worth an alarm
                self.reminders.append(
                    Reminder(
                        id=rid,
                        claim_index=claim.claim_index,
                        jurisdiction=claim.jurisdiction,
                        forum_code=claim.forum.code,
                        deadline=claim.deadline.date,
                        days_before=days,
                        due_at=due,
                        verified=claim.deadline.verified,
                    )
                )

    def _cancel_reminders(self, country: str) -> None:
        for m in self.reminders:
            if m.jurisdiction == country and m.state == "scheduled":
                m.state = "cancelled"

    # --- corrections ----------------------------------------------------------------------

    def correct(
        self,
        correction: CaseDetailsCorrected,
        rules: RuleBook,
        partners: Mapping[str, Sequence[Partner]],
        policy: Policy,
        now: datetime,
    ) -> list[EventPayload]:
        """The NGO corrected the case: re-route the claims and move their reminders.

        Open referrals stay with their partners (a lawyer who accepted is not dropped by
        a typo fix); claims now heard in a new country are routed there.
        """
        if self.erased or self.closed:
            return []
        for part in ("worker", "employment", "claims"):
            value = getattr(correction, part)
            if value is not None:
                dumped = (
                    [v.model_dump(mode="json") for v in value]
                    if isinstance(value, tuple)
                    else value.model_dump(mode="json")
                )
                self.case[part] = dumped
        if correction.worker is not None:
            self.language = correction.worker.preferred_language
        self.claims = route_claims(CaseSubmitted.model_validate(self.case), rules, now.date())
        current = {(c.claim_index, c.deadline.date) for c in self.claims if c.deadline}
        for m in self.reminders:
            if m.state == "scheduled" and (m.claim_index, m.deadline) not in current:
                m.state = "cancelled"
        return self.route(partners, policy, now)

    # --- consent and the case's end -----------------------------------------------------

    def record_consent(
        self,
        consent: ConsentSummary,
        partners: Mapping[str, Sequence[Partner]],
        policy: Policy,
        now: datetime,
    ) -> list[EventPayload]:
        """A new consent: routing resumes for whatever it now covers."""
        if all(c.consent_id != consent.consent_id for c in self.consents):
            self.consents.append(ConsentRecord.from_summary(consent))
        return self.route(partners, policy, now)

    def _withdraw_open(
        self, now: datetime, reason: str, consent_id: str | None = None
    ) -> list[EventPayload]:
        events: list[EventPayload] = []
        for r in self.referrals:
            if r.is_open and consent_id in (None, r.handoff.consent_id):
                events.append(
                    ReferralWithdrawn(**self._change(r, OPEN_STATUSES, "withdrawn", now, reason))
                )
        return events

    def withdraw_consent(
        self,
        consent_id: str,
        at: datetime,
        partners: Mapping[str, Sequence[Partner]],
        policy: Policy,
        now: datetime,
    ) -> list[EventPayload]:
        """A consent is withdrawn: the open referrals it allowed are withdrawn too."""
        for consent in self.consents:
            if consent.consent_id == consent_id and consent.withdrawn_at is None:
                consent.withdrawn_at = at
        events = self._withdraw_open(now, "consent withdrawn", consent_id)
        return events + self.route(partners, policy, now)

    def close_case(self, now: datetime) -> list[EventPayload]:
        """The NGO closed the case: open referrals are withdrawn, reminders stop."""
        events = self._withdraw_open(now, "case closed by the NGO")
        self.closed = True
        for m in self.reminders:
            if m.state == "scheduled":
                m.state = "cancelled"
        return events + self._refresh_status()

    def erase(self, now: datetime) -> list[EventPayload]:
        """The worker's data was erased: withdraw, and drop every personal token held and
        the partners' free text (a decline's or hand-on's reason, a progress note), which
        may name her. That text is sealed with the case's key, now destroyed, so a copy
        left elsewhere (an event) no longer opens either."""
        events = self.close_case(now)
        self.erased = True
        for r in self.referrals:
            for i, entry in enumerate(r.history):
                entry.note = None
                # Stored in clear before partners' text was sealed: drop it too.
                if entry.status == "declined" or (i == 0 and r.handed_on_from is not None):
                    entry.reason = None
            if r.status == "declined":
                r.reason = None
            if r.progress is not None:
                r.progress.note = None
        self.case = {
            "case_id": self.case_id,
            "employment": {"country": self.case.get("employment", {}).get("country")},
        }
        return events


def _lead_claim(claims: Sequence[ClaimRouting]) -> ClaimRouting | None:
    """The claim whose deadline comes first (the one to show on the offer)."""
    dated = [c for c in claims if c.deadline is not None]
    if dated:
        return min(dated, key=lambda c: c.deadline.date if c.deadline else date.max)
    return claims[0] if claims else None
