"""Forms to API bodies, errors to the person's language, and the Indonesian catalog
covering every message of the console (unit tier)."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from lintas_console.adapters.services_api import FieldProblem
from lintas_console.entrypoints.forms import aware, explain, flatten, nest
from lintas_console.i18n import Translator, load_catalogs, show_date, show_money

pytestmark = pytest.mark.unit
PACKAGE = Path(__file__).parents[1] / "src" / "lintas_console"
BABEL_CFG = Path(__file__).parents[1] / "babel.cfg"


def test_form_names_are_the_api_paths() -> None:
    body = nest(
        [
            ("external_ref", "NGO-1"),
            ("worker.phone", " +6281234567890 "),
            ("claims[0].type", "unpaid_wages"),
            ("claims[0].amount.value", "12000.00"),
            ("claims[1].type", "abuse"),
            ("claims[1].description", ""),
            ("consent.purposes", "legal_referral"),
            ("consent.purposes", "sms_updates"),
            ("csrf_token", "t"),
        ],
        frozenset({"consent.purposes"}),
    )
    assert body == {
        "external_ref": "NGO-1",
        "worker": {"phone": "+6281234567890"},
        "claims": [
            {"type": "unpaid_wages", "amount": {"value": "12000.00"}},
            {"type": "abuse"},
        ],
        "consent": {"purposes": ["legal_referral", "sms_updates"]},
    }
    assert flatten(body)["claims[0].amount.value"] == "12000.00"
    assert flatten(body)["consent.purposes"] == "legal_referral,sms_updates"


def test_a_local_time_gets_its_zone() -> None:
    assert aware("2026-09-15T09:30", "Asia/Jakarta") == "2026-09-15T09:30:00+07:00"
    assert aware("not a time", "Asia/Jakarta") is None


def test_a_bad_phone_is_explained_in_bahasa_indonesia() -> None:
    translator = Translator(load_catalogs())
    translator.use("id")
    problem = FieldProblem("worker.phone", "Value error, not a valid phone number", "value_error")
    assert explain(problem, translator.gettext).startswith("Nomor telepon tidak valid")
    translator.use("en")
    assert explain(problem, translator.gettext).startswith("Not a valid phone number")


def test_dates_and_money_follow_the_locale_and_money_is_never_a_float() -> None:
    translator = Translator(load_catalogs())
    translator.use("id")
    assert show_date("2026-08-31") == "31 Agu 2026"
    assert show_money("12000.10", "HKD") == "HK$12.000,10"
    translator.use("en")
    assert show_date("2026-08-31") == "31 Aug 2026"
    assert show_money("12000.10", "HKD") == "HK$12,000.10"
    # A float would print this as 10000000000000000.00.
    translator.use("id")
    assert show_money("10000000000000000.01", "HKD") == "HK$10.000.000.000.000.000,01"


def test_every_message_has_an_indonesian_translation() -> None:
    method_map, options_map = parse_mapping_cfg(BABEL_CFG.open())
    messages = {
        message
        for _file, _line, message, _comments, _context in extract_from_dir(
            PACKAGE, method_map, options_map
        )
        if isinstance(message, str)
    }
    assert len(messages) > 150  # the extraction found the templates, not just the code
    catalog = load_catalogs()["id"]
    untranslated = sorted(m for m in messages if catalog.gettext(m) == m and m not in SAME)
    assert untranslated == []


#: Words that are the same in both languages.
SAME = {"Email", "Forum", "Status", "Webhook", "Indonesia", "Hong Kong", "Malaysia", "Taiwan"}
