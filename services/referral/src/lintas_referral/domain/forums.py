"""Per-claim routing: which forum hears a claim, what comes first, and the deadline.

A pure function of the claim's facts and the rule book. The first matching rule in file
order wins; a claim that no rule covers (or that a rule says is not covered) is routed
to a human with the reason, never dropped.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from lintas_shared.events import CaseSubmitted
from pydantic import BaseModel, ConfigDict

from lintas_referral.domain.rules import FilingPeriod, Rule, RuleBook


@dataclass(frozen=True)
class ClaimFacts:
    """What routing needs to know about one claim."""

    claim_type: str
    employment_country: str
    sector: str
    worker_country: str
    amount: Decimal | None = None
    currency: str | None = None
    claimants: int = 1
    arose_on: date | None = None
    employment_ended_on: date | None = None

    @property
    def accident_on(self) -> date | None:
        """For an injury the claim arises on the day of the accident."""
        return self.arose_on


class ForumRef(BaseModel):
    """A forum as shown to the NGO and the partner."""

    model_config = ConfigDict(frozen=True)
    code: str
    name: str
    verified: bool


class Deadline(BaseModel):
    """The filing deadline and the rule and date it rests on."""

    model_config = ConfigDict(frozen=True)
    date: date
    basis: str
    verified: bool


class ClaimRouting(BaseModel):
    """Where one claim goes, or why a human must decide."""

    model_config = ConfigDict(frozen=True)
    claim_index: int
    claim_type: str
    status: str  # "routed" | "unassigned"
    jurisdiction: str | None = None
    rule_id: str | None = None
    forum: ForumRef | None = None
    prerequisites: tuple[ForumRef, ...] = ()
    then: tuple[ForumRef, ...] = ()
    deadline: Deadline | None = None
    deadline_note: str | None = None
    next_step: str | None = None
    notes: tuple[str, ...] = ()
    verified: bool = True
    reason: str | None = None


def add_months(start: date, months: int) -> date:
    """The same day `months` later, clamped to the end of a shorter month."""
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def _matches(rule: Rule, facts: ClaimFacts) -> bool:
    if "*" not in rule.employment_countries and (
        facts.employment_country not in rule.employment_countries
    ):
        return False
    if facts.claim_type not in rule.claim_types:
        return False
    if rule.sectors and facts.sector not in rule.sectors:
        return False
    if facts.sector in rule.excluded_sectors:
        return False
    if rule.employment == "current" and facts.employment_ended_on is not None:
        return False
    if rule.employment == "ended" and facts.employment_ended_on is None:
        return False
    if rule.max_claimants is not None and facts.claimants > rule.max_claimants:
        return False
    if rule.max_amount is not None:
        # Unknown or foreign-currency amounts cannot be shown to be under the ceiling.
        if facts.amount is None or facts.currency != rule.max_amount.currency:
            return False
        if facts.amount > rule.max_amount.amount:
            return False
    return True


_START_LABEL = {
    "claim_arose": ("the claim arose", "arose_on"),
    "employment_ended": ("the last day of work", "employment_ended_on"),
    "accident": ("the accident", "accident_on"),
}


def _deadline(rule: Rule, period: FilingPeriod, facts: ClaimFacts) -> tuple[Deadline | None, str]:
    label, attribute = _START_LABEL[period.from_]
    start: date | None = getattr(facts, attribute)
    if start is None:
        return None, f"{rule.id}: {period.describe()} from {label}, but that date is not known"
    end = (
        add_months(start, period.months)
        if period.months is not None
        else start + timedelta(days=period.days or 0)
    )
    basis = f"{rule.id} ({rule.forum}): {period.describe()} from {label} on {start.isoformat()}"
    return Deadline(date=end, basis=basis, verified=rule.verified), basis


def route_claim(index: int, facts: ClaimFacts, book: RuleBook) -> ClaimRouting:
    """Route one claim by the first matching rule."""
    for rule in book.rule:
        if not _matches(rule, facts):
            continue
        if rule.outcome == "not_covered":
            return ClaimRouting(
                claim_index=index,
                claim_type=facts.claim_type,
                status="unassigned",
                jurisdiction=rule.jurisdiction,
                rule_id=rule.id,
                reason=rule.reason,
                verified=rule.verified,
            )
        assert rule.forum is not None  # validated by the rule book
        forum = book.forum_by_code(rule.forum)
        # A rule is only as verified as the forum row and the rule row it rests on.
        verified = rule.verified and forum.verified

        def ref(code: str) -> ForumRef:
            f = book.forum_by_code(code)
            return ForumRef(code=f.code, name=f.name, verified=f.verified)

        deadline, note = (None, "no filing period is known for this forum: verify")
        if rule.deadline is not None:
            deadline, note = _deadline(rule, rule.deadline, facts)
            if deadline is not None and not verified:
                deadline = deadline.model_copy(update={"verified": False})
        return ClaimRouting(
            claim_index=index,
            claim_type=facts.claim_type,
            status="routed",
            jurisdiction=rule.jurisdiction,
            rule_id=rule.id,
            forum=ForumRef(code=forum.code, name=forum.name, verified=verified),
            prerequisites=tuple(ref(c) for c in rule.prerequisites),
            then=tuple(ref(c) for c in rule.then),
            deadline=deadline,
            deadline_note=None if deadline is not None else note,
            next_step=rule.next_step,
            # Where she is now decides what is practical (DESIGN §3): say so, per rule.
            notes=(rule.worker_abroad_note,)
            if rule.worker_abroad_note and facts.worker_country != rule.jurisdiction
            else (),
            verified=verified,
        )
    return ClaimRouting(
        claim_index=index,
        claim_type=facts.claim_type,
        status="unassigned",
        reason=(
            f"no routing rule covers a {facts.claim_type} claim from employment in "
            f"{facts.employment_country} ({facts.sector}); a caseworker must decide"
        ),
        verified=False,
    )


def claim_facts(case: CaseSubmitted) -> list[ClaimFacts]:
    """The routing facts of each claim of a submitted case."""
    return [
        ClaimFacts(
            claim_type=claim.type.value,
            employment_country=case.employment.country,
            sector=case.employment.sector.value,
            worker_country=case.worker.current_country,
            amount=claim.amount.amount if claim.amount else None,
            currency=claim.amount.currency if claim.amount else None,
            claimants=claim.claimants,
            arose_on=claim.arose_on,
            employment_ended_on=case.employment.ended_on,
        )
        for claim in case.claims
    ]


def route_claims(case: CaseSubmitted, book: RuleBook) -> list[ClaimRouting]:
    """Route every claim of a case."""
    return [route_claim(i, facts, book) for i, facts in enumerate(claim_facts(case))]
