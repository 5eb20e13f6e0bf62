"""Schema evolution: the models against the committed contracts, and the checker's rule
shown on copies of a model changed in breaking and additive ways."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pytest
from lintas_shared import events as ev
from lintas_shared.contracts import (
    WRITE_COMMAND,
    breaking_changes,
    check_contracts,
    contract,
    write_contracts,
)
from pydantic import create_model

pytestmark = pytest.mark.unit


def test_the_models_match_the_committed_contracts() -> None:
    report = check_contracts()
    assert not report.breaking, (
        "A consumer of the previous version could not read these changes:\n  "
        + "\n  ".join(report.breaking)
        + "\nMake the change additive, or give the topic a new version in "
        "lintas_shared/topics.py (see README, 'Changing an event')."
    )
    assert not report.stale, (
        "shared/contracts/ is stale:\n  "
        + "\n  ".join(report.stale)
        + f"\nAn additive change: run `{WRITE_COMMAND}` and commit shared/contracts/ with it."
    )


def _copy(
    cls: type[ev.EventPayload],
    *,
    drop: tuple[str, ...] = (),
    topic: str | None = None,
    **fields: Any,
) -> type[ev.EventPayload]:
    """A copy of `cls` (same name, type and topic) with fields dropped, changed or added."""
    kept = {
        name: (info.annotation, info)
        for name, info in cls.model_fields.items()
        if name not in drop and name not in fields
    }
    copy: type[ev.EventPayload] = create_model(  # type: ignore[call-overload]
        cls.__name__, __base__=ev.EventPayload, __doc__=cls.__doc__, **kept, **fields
    )
    copy.TYPE = cls.TYPE
    copy.TOPIC = topic or cls.TOPIC
    return copy


_OUTCOME = Literal["recovered", "settled", "unsuccessful", "withdrawn"]

BREAKING = {
    "a field removed": (_copy(ev.ReferralOffered, drop=("country",)), "country: field removed"),
    "a field renamed": (
        _copy(ev.ReferralOffered, drop=("offered_at",), offered_on=(datetime, ...)),
        "offered_at: field removed",
    ),
    "a type changed": (_copy(ev.ReferralOffered, country=(int, ...)), "country: type changed"),
    "an optional field made required": (
        _copy(ev.ReferralOffered, forum=(ev.ForumSummary, ...)),
        "forum: optional field made required",
    ),
    "a required field made nullable": (
        _copy(ev.ReferralOffered, case_id=(str | None, ...)),
        "case_id: type changed from string to null | string",
    ),
    "an enum value removed": (
        _copy(ev.CaseClosed, outcome=(_OUTCOME, ...)),
        'outcome: value removed: "unreachable"',
    ),
    "a nested field removed": (
        _copy(ev.CaseSubmitted, worker=(create_model("WorkerInfo", phone=(str, ...)), ...)),
        "worker.full_name: field removed",
    ),
}


@pytest.mark.parametrize("change", list(BREAKING))
def test_the_checker_refuses_a_breaking_change(change: str) -> None:
    changed, expected = BREAKING[change]
    original = ev.EVENT_TYPES[changed.TYPE]
    problems = breaking_changes(contract(original), contract(changed))
    assert any(expected in p for p in problems), problems


def _snapshots(tmp_path: Path) -> Path:
    write_contracts(tmp_path)
    return tmp_path


def _with(changed: type[ev.EventPayload]) -> dict[str, type[ev.EventPayload]]:
    return {**ev.EVENT_TYPES, changed.TYPE: changed}


def test_a_breaking_change_fails_the_contract_check(tmp_path: Path) -> None:
    changed = _copy(ev.ReferralOffered, drop=("partner_organisation_id",))
    report = check_contracts(_snapshots(tmp_path), _with(changed))
    assert report.breaking == [
        "org.lintas.referral.offered on lintas.referrals.v1: "
        "partner_organisation_id: field removed (or renamed)"
    ]


def test_an_additive_change_passes_but_asks_for_the_snapshot(tmp_path: Path) -> None:
    changed = _copy(
        ev.ReferralOffered,
        language=(str | None, None),
        outcome_hint=(Literal["a", "b"], "a"),
    )
    assert breaking_changes(contract(ev.ReferralOffered), contract(changed)) == []
    directory = _snapshots(tmp_path)
    report = check_contracts(directory, _with(changed))
    assert report.breaking == []
    assert report.stale == ["org.lintas.referral.offered: changed (additively)"]
    write_contracts(directory, _with(changed))
    assert check_contracts(directory, _with(changed)).stale == []


def test_a_new_enum_value_and_a_new_type_are_additive(tmp_path: Path) -> None:
    outcomes = Literal["recovered", "settled", "unsuccessful", "withdrawn", "unreachable", "x"]
    changed = _copy(ev.CaseClosed, outcome=(outcomes, ...))
    assert breaking_changes(contract(ev.CaseClosed), contract(changed)) == []
    newcomer = _copy(ev.CaseErased)
    newcomer.TYPE = "org.lintas.case.archived"
    report = check_contracts(_snapshots(tmp_path), {**ev.EVENT_TYPES, newcomer.TYPE: newcomer})
    assert report.breaking == []
    assert report.stale == ["org.lintas.case.archived: new event type, no snapshot yet"]


def test_a_breaking_change_on_a_new_topic_version_is_accepted(tmp_path: Path) -> None:
    changed = _copy(ev.ReferralOffered, drop=("country",), topic="lintas.referrals.v2")
    report = check_contracts(_snapshots(tmp_path), _with(changed))
    assert report.breaking == []
    assert report.stale == [
        "org.lintas.referral.offered: moved from lintas.referrals.v1 to lintas.referrals.v2"
    ]
