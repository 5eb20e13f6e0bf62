"""Referral's use cases."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from lintas_shared.envelope import CloudEvent
from lintas_shared.events import (
    CaseRoutingBlocked,
    CaseSubmitted,
    ReferralOffered,
    make_event,
    parse_payload,
)
from lintas_shared.ids import deterministic_id

from lintas_referral.domain.routing import Blocked, Offer, Partner, decide

SOURCE = "/lintas/referral"
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


class PartnerDirectory(Protocol):
    """The legal partners of a country, with their current load."""

    async def in_country(self, country: str) -> Sequence[Partner]: ...


class RoutingRepository(Protocol):
    """One routing record per case; a write carries its events in the same update."""

    async def create(
        self,
        case: CaseSubmitted,
        decision: Offer | Blocked,
        referral_id: str | None,
        now: datetime,
        events: Sequence[CloudEvent],
    ) -> bool:
        """Store the case's first routing; False if this case was already routed."""
        ...


async def on_case_submitted(
    event: CloudEvent,
    routings: RoutingRepository,
    partners: PartnerDirectory,
    clock: Clock = utc_now,
) -> None:
    """Route a new case: offer it to a partner, or say why nobody can be offered it."""
    case = parse_payload(event, CaseSubmitted)
    decision = decide(case, await partners.in_country(case.employment.country))
    now = clock()
    if isinstance(decision, Offer):
        referral_id = deterministic_id("referral", case.case_id, decision.partner.id)
        payload: ReferralOffered | CaseRoutingBlocked = ReferralOffered(
            referral_id=referral_id,
            case_id=case.case_id,
            partner_organisation_id=decision.partner.id,
            country=decision.country,
            offered_at=now,
        )
    else:
        referral_id = None
        payload = CaseRoutingBlocked(
            case_id=case.case_id, status=decision.status, reason=decision.reason
        )
    out = make_event(payload, source=SOURCE, subject=case.case_id, traceparent=event.traceparent)
    # A redelivered `case submitted` finds the routing already stored and changes nothing.
    await routings.create(case, decision, referral_id, now, [out])
