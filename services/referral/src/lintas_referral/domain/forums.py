"""Per-claim routing: which forum hears a claim, what comes first, and the deadline.

A pure function of the claim's facts and the rule book. The first matching rule in file
order wins; a claim that no rule covers (or that a rule says is not covered) is routed
to a human with the reason, never dropped.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from lintas_shared.events import CaseSubmitted
from pydantic import BaseModel, ConfigDict, Field

from lintas_referral.domain.rules import FilingPeriod, Rule, RuleBook


@dataclass(frozen=True)
class ClaimFacts:
    """What routing needs to know about one claim.

    `amount` is per claimant (what each worker claims), so it is compared with a forum's
    per-claimant ceiling as it is, whatever the number of claimants.
    """

    claim_type: str
    employment_country: str
    sector: str
    worker_country: str
    amount: Decimal | None = None
    currency: str | None = None
    claimants: int = 1
    arose_on: date | None = None
    employment_ended_on: date | None = None
    agency_country: str | None = None

    @property
    def accident_on(self) -> date | None:
        """For an injury the claim arises on the day of the accident."""
        return self.arose_on

    @property
    def offence_on(self) -> date | None:
        """For an agency's overcharging, the day the fee was taken (the claim arose)."""
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
    suggested: tuple[ForumRef, ...] = Field(
        default=(), description="Steps the rule suggests first but does not require"
    )
    then: tuple[ForumRef, ...] = ()
    alternatives: tuple[ForumRef, ...] = Field(
        default=(), description="Other forums that may hear the claim (e.g. a civil court)"
    )
    deadline: Deadline | None = None
    deadline_note: str | None = None
    deadline_passed: bool = Field(
        default=False, description="The filing deadline was already past on the day of routing"
    )
    late_filing: str | None = Field(
        default=None, description="The late-filing route the rule records, if any"
    )
    forum_until: date | None = Field(
        default=None,
        description="The forum hears the claim only if it is filed by this day (e.g. MECAB's "
        "12 months); after it, the claim goes to the next forum",
    )
    next_step: str | None = None
    legal_basis: str | None = None
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = Field(
        default=(), description="What the worker must know before filing (e.g. above a ceiling)"
    )
    missing_facts: tuple[str, ...] = Field(
        default=(),
        description="Facts routing needed but did not have; the routing is then unverified",
    )
    verified: bool = True
    reason: str | None = None


def add_months(start: date, months: int) -> date:
    """The same day `months` later, clamped to the end of a shorter month."""
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(start.day, calendar.monthrange(year, month)[1]))


def _period_end(start: date, period: FilingPeriod) -> date:
    if period.months is not None:
        return add_months(start, period.months)
    return start + timedelta(days=period.days or 0)


_START_LABEL = {
    "claim_arose": ("the claim arose", "arose_on"),
    "employment_ended": ("the last day of work", "employment_ended_on"),
    "accident": ("the accident", "accident_on"),
    "offence": ("the offence", "offence_on"),
}


def _money(currency: str, value: Decimal) -> str:
    return f"{currency} {value:,.2f}"


@dataclass
class _Check:
    """How one rule fits one claim: matched or not, and what it could not check."""

    matched: bool
    missing: list[str] = field(default_factory=list)
    passed_over: str | None = None  # why a forum that would otherwise hear it cannot
    warnings: list[str] = field(default_factory=list)
    over_ceiling: bool = False
    forum_until: date | None = None


def _fixed_criteria(rule: Rule, facts: ClaimFacts) -> bool:
    """The criteria every claim has facts for."""
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
    if rule.worker_location == "in_jurisdiction" and facts.worker_country != rule.jurisdiction:
        return False
    if rule.worker_location == "outside_jurisdiction" and (
        facts.worker_country == rule.jurisdiction
    ):
        return False
    return rule.max_claimants is None or facts.claimants <= rule.max_claimants


def _ceiling_for(rule: Rule, facts: ClaimFacts, check: _Check) -> Decimal | None:
    """The ceiling that applies to this claim; None when it depends on a missing fact."""
    assert rule.max_amount is not None
    ceiling = rule.max_amount.amount
    earlier = rule.max_amount_if_arose_before
    if earlier is None:
        return ceiling
    if facts.arose_on is not None:
        return earlier.amount if facts.arose_on < earlier.arose_before else ceiling
    if facts.amount is not None and facts.amount <= earlier.amount:
        return earlier.amount  # under both ceilings: the date does not matter
    check.missing.append(
        f"the date the claim arose (the ceiling is {_money(earlier.currency, earlier.amount)} "
        f"where the right arose wholly before {earlier.arose_before.isoformat()})"
    )
    return None


def _check_amount(rule: Rule, facts: ClaimFacts, check: _Check) -> None:
    if rule.max_amount is None:
        return
    currency = rule.max_amount.currency
    if facts.amount is None or facts.currency != currency:
        # Never shown to be under (or over) the ceiling: say which fact is missing.
        given = "no amount was given" if facts.amount is None else f"given in {facts.currency}"
        check.missing.append(f"the amount per claimant in {currency} ({given})")
        return
    ceiling = _ceiling_for(rule, facts, check)
    if ceiling is None or facts.amount <= ceiling:
        return
    check.over_ceiling = True
    amount = _money(currency, facts.amount)
    if rule.over_ceiling == "next_rule":
        check.matched = False
        return
    text = f"The amount per claimant ({amount}) is above the ceiling of {_money(currency, ceiling)}"
    mediated = rule.max_amount_mediated
    if mediated is not None and facts.amount <= mediated.amount:
        text += (
            f"; up to {_money(currency, mediated.amount)} only if the claim went through "
            "union-assisted or tripartite mediation"
        )
    elif mediated is not None:
        text += f", and above {_money(currency, mediated.amount)} even after mediation"
    check.warnings.append(f"{text}. {rule.over_ceiling_warning}")


def _check_limit(rule: Rule, facts: ClaimFacts, today: date, check: _Check) -> None:
    limit = rule.jurisdiction_limit
    if limit is None:
        return
    label, attribute = _START_LABEL[limit.from_]
    start: date | None = getattr(facts, attribute)
    if start is None:
        check.missing.append(
            f"the date {label} (the forum hears only claims filed within {limit.describe()} of it)"
        )
        return
    until = _period_end(start, limit)
    if today > until:
        check.matched = False
        check.passed_over = (
            f"Not {rule.forum}: it hears only claims filed within {limit.describe()} after "
            f"{label}, and this one dates from {start.isoformat()} ({rule.id})"
        )
        return
    check.forum_until = until


def _check(rule: Rule, facts: ClaimFacts, today: date) -> _Check:
    if not _fixed_criteria(rule, facts):
        return _Check(matched=False)
    check = _Check(matched=True)
    if rule.agency_countries:
        if facts.agency_country is None:
            check.missing.append(
                "the country where the placement agency is licensed "
                "(employment.placement_agency_country)"
            )
        elif facts.agency_country not in rule.agency_countries:
            return _Check(matched=False)
    _check_limit(rule, facts, today, check)
    if check.matched:
        _check_amount(rule, facts, check)
    if check.missing and rule.over_ceiling != "warn":
        # A rule whose forum depends on an unknown fact is not applied: the next one is,
        # marked unverified with the fact named.
        check.matched = False
    return check


def _deadline(rule: Rule, period: FilingPeriod, facts: ClaimFacts) -> tuple[Deadline | None, str]:
    label, attribute = _START_LABEL[period.from_]
    start: date | None = getattr(facts, attribute)
    if start is None:
        return None, f"{rule.id}: {period.describe()} from {label}, but that date is not known"
    end = _period_end(start, period)
    basis = f"{rule.id} ({rule.forum}): {period.describe()} from {label} on {start.isoformat()}"
    return Deadline(date=end, basis=basis, verified=rule.verified), basis


def route_claim(index: int, facts: ClaimFacts, book: RuleBook, today: date) -> ClaimRouting:
    """Route one claim by the first matching rule, as of `today` (the routing's clock)."""
    missing: list[str] = []
    passed_over: list[str] = []

    def ref(code: str) -> ForumRef:
        f = book.forum_by_code(code)
        return ForumRef(code=f.code, name=f.name, verified=f.verified)

    for rule in book.rule:
        check = _check(rule, facts, today)
        if not check.matched:
            missing += [m for m in check.missing if m not in missing]
            if check.passed_over:
                passed_over.append(check.passed_over)
            continue
        missing += [m for m in check.missing if m not in missing]
        if rule.outcome == "not_covered":
            return ClaimRouting(
                claim_index=index,
                claim_type=facts.claim_type,
                status="unassigned",
                jurisdiction=rule.jurisdiction,
                rule_id=rule.id,
                reason=rule.reason,
                missing_facts=tuple(missing),
                verified=rule.verified and not missing,
            )
        assert rule.forum is not None  # validated by the rule book
        forum = book.forum_by_code(rule.forum)
        # A routing is only as verified as the forum row and the rule row it rests on, and
        # only when every fact it depends on was known.
        verified = rule.verified and forum.verified and not missing

        deadline, note = (None, "no filing period is known for this forum: verify")
        if rule.deadline is not None:
            deadline, note = _deadline(rule, rule.deadline, facts)
            if deadline is not None and not verified:
                deadline = deadline.model_copy(update={"verified": False})
        passed = deadline is not None and deadline.date < today
        notes = list(passed_over)
        if check.forum_until is not None:
            notes.append(
                f"{forum.name} hears it only if filed by {check.forum_until.isoformat()}; "
                "after that, the next forum in the rules hears it."
            )
        # Where she is now decides what is practical (DESIGN §3): say so, per rule.
        if rule.worker_abroad_note and facts.worker_country != rule.jurisdiction:
            notes.append(rule.worker_abroad_note)
        warnings = list(check.warnings)
        if missing:
            warnings.append("Unverified: routing is missing " + "; ".join(missing) + ".")
        if passed and deadline is not None:
            warnings.insert(0, f"The filing deadline passed on {deadline.date.isoformat()}.")
            if rule.late_filing is None:
                return ClaimRouting(
                    claim_index=index,
                    claim_type=facts.claim_type,
                    status="unassigned",
                    jurisdiction=rule.jurisdiction,
                    rule_id=rule.id,
                    forum=ForumRef(code=forum.code, name=forum.name, verified=verified),
                    deadline=deadline,
                    deadline_passed=True,
                    notes=tuple(notes),
                    warnings=tuple(warnings),
                    missing_facts=tuple(missing),
                    verified=verified,
                    reason=(
                        f"deadline passed on {deadline.date.isoformat()} ({deadline.basis}) "
                        "and no late-filing route is recorded: a caseworker must decide"
                    ),
                )
        return ClaimRouting(
            claim_index=index,
            claim_type=facts.claim_type,
            status="routed",
            jurisdiction=rule.jurisdiction,
            rule_id=rule.id,
            forum=ForumRef(code=forum.code, name=forum.name, verified=verified),
            prerequisites=tuple(ref(c) for c in rule.prerequisites),
            suggested=tuple(ref(c) for c in rule.suggested),
            then=tuple(ref(c) for c in rule.then),
            alternatives=tuple(
                ref(c)
                for c in (
                    *rule.alternatives,
                    *(rule.over_ceiling_alternatives if check.over_ceiling else ()),
                )
            ),
            deadline=deadline,
            deadline_note=None if deadline is not None else note,
            deadline_passed=passed,
            late_filing=rule.late_filing if passed else None,
            forum_until=check.forum_until,
            next_step=rule.next_step,
            legal_basis=rule.legal_basis,
            notes=tuple(notes),
            warnings=tuple(warnings),
            missing_facts=tuple(missing),
            verified=verified,
        )
    lacking = f" (missing: {'; '.join(missing)})" if missing else ""
    return ClaimRouting(
        claim_index=index,
        claim_type=facts.claim_type,
        status="unassigned",
        reason=(
            f"no routing rule covers a {facts.claim_type} claim from employment in "
            f"{facts.employment_country} ({facts.sector}){lacking}; a caseworker must decide"
        ),
        notes=tuple(passed_over),
        missing_facts=tuple(missing),
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
            amount=Decimal(claim.amount.value) if claim.amount else None,
            currency=claim.amount.currency if claim.amount else None,
            claimants=claim.claimants,
            arose_on=claim.arose_on,
            employment_ended_on=case.employment.ended_on,
            agency_country=case.employment.placement_agency_country,
        )
        for claim in case.claims
    ]


def route_claims(case: CaseSubmitted, book: RuleBook, today: date) -> list[ClaimRouting]:
    """Route every claim of a case as of `today`."""
    return [route_claim(i, facts, book, today) for i, facts in enumerate(claim_facts(case))]
