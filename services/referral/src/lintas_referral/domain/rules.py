"""The routing rules as data: forums and the rules that send claims to them.

The rules live in a TOML file (`data/forums.toml`) that lawyers can correct. The file
is validated as a whole when the service starts; a broken row raises `RulesFileError`
naming the row and the field, so the service refuses to start rather than route on a
half-read rule. Pure: the caller reads the file, this module only parses text.
"""

from __future__ import annotations

import tomllib
from datetime import date
from decimal import Decimal
from importlib import resources
from typing import Literal

from lintas_shared.values import ClaimType, CountryCode, Money, Sector
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

RuleStatus = Literal["verified", "verify"]
ClockStart = Literal["claim_arose", "employment_ended", "accident", "offence"]
WorkerLocation = Literal["any", "in_jurisdiction", "outside_jurisdiction"]


class RulesFileError(ValueError):
    """The rules file cannot be used; the message names the row and the field."""


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Forum(_Row):
    """A place where a claim is filed or a step is taken."""

    code: str = Field(pattern=r"^[A-Z]{2}-[A-Z0-9-]+$")
    name: str = Field(min_length=1)
    jurisdiction: CountryCode
    source: str = Field(min_length=1)
    verified_on: date
    status: RuleStatus

    @property
    def verified(self) -> bool:
        """The row was checked against its source."""
        return self.status == "verified"


class FilingPeriod(_Row):
    """How long after which date a claim may be filed."""

    months: int | None = Field(default=None, ge=1)
    days: int | None = Field(default=None, ge=1)
    from_: ClockStart = Field(alias="from")

    @model_validator(mode="after")
    def _one_length(self) -> FilingPeriod:
        if (self.months is None) == (self.days is None):
            raise ValueError("give exactly one of 'months' or 'days'")
        return self

    def describe(self) -> str:
        """'12 months', '30 days'."""
        return f"{self.months} months" if self.months is not None else f"{self.days} days"


class EarlierCeiling(Money):
    """A lower ceiling where the right arose wholly before a day (MECAB before 17 Sep 2021)."""

    arose_before: date


class Rule(_Row):
    """Which claims go to which forum (or are known not to be covered)."""

    id: str = Field(pattern=r"^[a-z0-9-]+$")
    outcome: Literal["forum", "not_covered"] = "forum"
    forum: str | None = None
    reason: str | None = None
    employment_countries: tuple[str, ...] = Field(min_length=1)
    jurisdiction: CountryCode
    claim_types: tuple[ClaimType, ...] = Field(min_length=1)
    sectors: tuple[Sector, ...] = ()
    excluded_sectors: tuple[Sector, ...] = ()
    employment: Literal["any", "current", "ended"] = "any"
    agency_countries: tuple[CountryCode, ...] = ()
    worker_location: WorkerLocation = "any"
    max_amount: Money | None = None
    max_amount_if_arose_before: EarlierCeiling | None = None
    max_amount_mediated: Money | None = None
    over_ceiling: Literal["next_rule", "warn"] = "next_rule"
    over_ceiling_warning: str | None = None
    over_ceiling_alternatives: tuple[str, ...] = ()
    max_claimants: int | None = Field(default=None, ge=1)
    jurisdiction_limit: FilingPeriod | None = None
    deadline: FilingPeriod | None = None
    late_filing: str | None = None
    prerequisites: tuple[str, ...] = ()
    suggested: tuple[str, ...] = ()
    then: tuple[str, ...] = ()
    alternatives: tuple[str, ...] = ()
    legal_basis: str | None = None
    next_step: str | None = None
    worker_abroad_note: str | None = None
    source: str = Field(min_length=1)
    verified_on: date
    status: RuleStatus

    @model_validator(mode="after")
    def _outcome_fields(self) -> Rule:
        if self.outcome == "forum" and (not self.forum or not self.next_step):
            raise ValueError("a forum rule needs 'forum' and 'next_step'")
        if self.outcome == "not_covered" and not self.reason:
            raise ValueError("a not_covered rule needs 'reason'")
        ceilings = [self.max_amount_if_arose_before, self.max_amount_mediated]
        if any(c is not None for c in ceilings) and self.max_amount is None:
            raise ValueError("a conditional ceiling needs 'max_amount' too")
        for other in ceilings:
            if other is not None and self.max_amount and other.currency != self.max_amount.currency:
                raise ValueError("every ceiling of a rule is in the currency of 'max_amount'")
        if self.over_ceiling == "warn" and (
            self.max_amount is None or not self.over_ceiling_warning
        ):
            raise ValueError("over_ceiling = 'warn' needs 'max_amount' and 'over_ceiling_warning'")
        return self

    @property
    def verified(self) -> bool:
        """The row was checked against its source."""
        return self.status == "verified"

    @property
    def ceiling(self) -> Decimal | None:
        """The per-claimant ceiling as a number, if any."""
        return None if self.max_amount is None else self.max_amount.amount


class RuleBook(_Row):
    """Every forum and rule, cross-checked: rules name only forums that exist."""

    forum: tuple[Forum, ...] = Field(min_length=1)
    rule: tuple[Rule, ...] = Field(min_length=1)

    def forum_by_code(self, code: str) -> Forum:
        """The forum with this code (validated to exist for every rule reference)."""
        for forum in self.forum:
            if forum.code == code:
                return forum
        raise KeyError(code)


def _check_references(book: RuleBook) -> None:
    codes = [f.code for f in book.forum]
    for index, forum in enumerate(book.forum):
        if codes.index(forum.code) != index:
            raise RulesFileError(f"forum[{index}] ({forum.code}), field 'code': duplicate code")
    seen: set[str] = set()
    for index, rule in enumerate(book.rule):
        where = f"rule[{index}] ({rule.id})"
        if rule.id in seen:
            raise RulesFileError(f"{where}, field 'id': duplicate id")
        seen.add(rule.id)
        for field in (
            "forum",
            "prerequisites",
            "suggested",
            "then",
            "alternatives",
            "over_ceiling_alternatives",
        ):
            value = getattr(rule, field)
            refs = [value] if isinstance(value, str) else list(value or ())
            for ref in refs:
                if ref not in codes:
                    raise RulesFileError(f"{where}, field '{field}': unknown forum {ref!r}")
        if rule.forum and book.forum_by_code(rule.forum).jurisdiction != rule.jurisdiction:
            raise RulesFileError(
                f"{where}, field 'jurisdiction': {rule.jurisdiction} is not the forum's"
            )


def _describe_error(raw: dict[str, object], exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = list(err["loc"])
    row = ""
    if len(loc) >= 2 and isinstance(loc[1], int):
        table = str(loc[0])
        rows = raw.get(table)
        ident = ""
        if isinstance(rows, list) and loc[1] < len(rows) and isinstance(rows[loc[1]], dict):
            ident = str(rows[loc[1]].get("id") or rows[loc[1]].get("code") or "")
        row = f"{table}[{loc[1]}]" + (f" ({ident})" if ident else "")
        loc = loc[2:]
    field = ".".join(str(p) for p in loc) or "<row>"
    return f"{row or 'file'}, field '{field}': {err['msg']}"


def parse_rules(text: str, *, name: str = "forums.toml") -> RuleBook:
    """Parse and validate a rules file; raises RulesFileError naming row and field."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesFileError(f"{name}: not valid TOML: {exc}") from None
    try:
        book = RuleBook.model_validate(raw)
    except ValidationError as exc:
        raise RulesFileError(f"{name}: {_describe_error(raw, exc)}") from None
    try:
        _check_references(book)
    except RulesFileError as exc:
        raise RulesFileError(f"{name}: {exc}") from None
    return book


def load_default_rules() -> RuleBook:
    """The rules shipped with the service."""
    text = resources.files("lintas_referral.data").joinpath("forums.toml").read_text("utf-8")
    return parse_rules(text)
