"""Validation of the rules file: a broken row stops the service naming row and field."""

from __future__ import annotations

from datetime import date
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
    "HK-LD-ECD",
    "HK-ECO-DC",
    "HK-SCT",
    "HK-EAA",
    "SG-CIVIL",
    "SG-MOM-EA",
    "ID-CONSULATE",
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
        'source = "clic.org.hk; Judiciary LT page; labour.gov.hk Labour Relations Division '
        '(conciliation voluntary before LT); Limitation Ordinance Cap 347 (6 years)"\n',
        "",
    )
    with pytest.raises(RulesFileError, match=r"rule\[1\] \(hk-lt-employment\), field 'source'"):
        parse_rules(broken)


def test_a_bad_status_names_row_and_field() -> None:
    broken = TEXT.replace('status = "verify"', 'status = "maybe"', 1)
    with pytest.raises(RulesFileError, match=r"forum\[3\] \(HK-LD-ECD\), field 'status'"):
        parse_rules(broken)


def test_an_unknown_forum_reference_names_row_and_field() -> None:
    broken = TEXT.replace('then = ["SG-ECT"]', 'then = ["SG-NOPE"]', 1)
    with pytest.raises(RulesFileError, match=r"rule\[6\].*field 'then': unknown forum 'SG-NOPE'"):
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
    broken.write_text(TEXT.replace("verified_on = 2026-12-03", 'verified_on = "last week"', 1))
    with pytest.raises(
        RulesFileError, match=r"forum\[0\] \(HK-LD-CONCILIATION\), field 'verified_on'"
    ):
        create_app(ReferralSettings(rules_file=broken))


README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_rows() -> list[tuple[str, str, str, str, str]]:
    text = README.read_text("utf-8")
    table = text.split("<!-- rules-table:start -->", 1)[1].split("<!-- rules-table:end -->")[0]
    rows = []
    for line in table.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.append((cells[0].split("`")[1], cells[2], cells[3], cells[4], cells[5]))
    return rows


def test_the_readme_rule_table_matches_the_rules_file() -> None:
    book = load_default_rules()
    in_file = [
        (row.code, row.jurisdiction, row.status, row.verified_on.isoformat(), row.source)
        for row in book.forum
    ] + [
        (row.id, row.jurisdiction, row.status, row.verified_on.isoformat(), row.source)
        for row in book.rule
    ]
    assert _readme_rows() == in_file


def test_every_row_has_a_source_a_date_and_a_status() -> None:
    book = load_default_rules()
    for row in (*book.forum, *book.rule):
        assert row.source.strip()
        assert row.verified_on <= date(2026, 12, 31)
        assert row.status in ("verified", "verify")
