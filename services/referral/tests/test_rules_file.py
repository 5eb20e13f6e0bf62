"""Validation of the rules file: a broken row stops the service naming row and field."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from lintas_referral.bootstrap import create_app
from lintas_referral.domain.rules import RulesFileError, load_default_rules, parse_rules
from lintas_referral.settings import ReferralSettings

pytestmark = pytest.mark.unit
TEXT = resources.files("lintas_referral.data").joinpath("forums.toml").read_text("utf-8")
CODES = {
    "HK-LD-CONCILIATION",
    "HK-MECAB",
    "HK-LT",
    "HK-ECO-DC",
    "SG-TADM",
    "SG-ECT",
    "SG-MOM-FDW",
    "SG-WICA",
    "ID-BP2MI",
}


def test_every_forum_of_the_design_is_in_the_file_with_source_and_date() -> None:
    book = load_default_rules()
    assert {f.code for f in book.forum} == CODES
    for row in (*book.forum, *book.rule):
        assert row.source.strip()
        assert row.verified_on.year >= 2026
        assert row.status in ("verified", "verify")


def test_a_missing_source_names_row_and_field() -> None:
    broken = TEXT.replace(
        'source = "clic.org.hk; Judiciary LT page; Limitation Ordinance Cap 347 (6 years)"\n', ""
    )
    with pytest.raises(RulesFileError, match=r"rule\[1\] \(hk-lt-employment\), field 'source'"):
        parse_rules(broken)


def test_a_bad_status_names_row_and_field() -> None:
    broken = TEXT.replace('status = "verify"', 'status = "maybe"', 1)
    with pytest.raises(RulesFileError, match=r"forum\[6\] \(SG-MOM-FDW\), field 'status'"):
        parse_rules(broken)


def test_an_unknown_forum_reference_names_row_and_field() -> None:
    broken = TEXT.replace('then = ["SG-ECT"]', 'then = ["SG-NOPE"]', 1)
    with pytest.raises(RulesFileError, match=r"rule\[5\].*field 'then': unknown forum 'SG-NOPE'"):
        parse_rules(broken)


def test_a_deadline_needs_one_length() -> None:
    broken = TEXT.replace(
        'deadline = { months = 24, from = "accident" }', 'deadline = { from = "accident" }'
    )
    with pytest.raises(RulesFileError, match=r"rule\[2\] \(hk-eco-injury\), field 'deadline'"):
        parse_rules(broken)


def test_not_toml_at_all() -> None:
    with pytest.raises(RulesFileError, match="not valid TOML"):
        parse_rules("[[forum]\n")


def test_a_broken_rules_file_stops_the_service_at_start(tmp_path: Path) -> None:
    broken = tmp_path / "forums.toml"
    broken.write_text(TEXT.replace("verified_on = 2026-09-01", 'verified_on = "last week"', 1))
    with pytest.raises(
        RulesFileError, match=r"forum\[0\] \(HK-LD-CONCILIATION\), field 'verified_on'"
    ):
        create_app(ReferralSettings(rules_file=broken))
