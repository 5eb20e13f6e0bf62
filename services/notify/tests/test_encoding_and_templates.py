"""SMS encoding, segment counting and the template catalogue."""

from __future__ import annotations

import pytest
from lintas_notify.domain.encoding import normalise_typography, sms_cost
from lintas_notify.domain.templates import TemplateError, load_catalogue

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("{" * 80, "GSM-7", 1),  # extension characters count twice
        ("{" * 81, "GSM-7", 2),
        # 306 septets would fit two parts, but the escape pair at 153 cannot straddle them.
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 3),
        ("a" * 69 + "雇", "UCS-2", 1),
        ("a" * 70 + "雇", "UCS-2", 2),
        ("a" * 133 + "雇", "UCS-2", 2),
        ("a" * 134 + "雇", "UCS-2", 3),
    ],
)
def test_encoding_and_segments(text: str, encoding: str, segments: int) -> None:
    cost = sms_cost(text)
    assert (cost.encoding, cost.segments) == (encoding, segments)


def test_typography_is_normalised_back_into_gsm7() -> None:
    text = "Kasus \u201cAnda\u201d \u2013 nomor\u00a0LB-7K3Q9\u2026"
    assert sms_cost(text).encoding == "UCS-2"
    normalised = normalise_typography(text)
    assert normalised == 'Kasus "Anda" - nomor LB-7K3Q9...'
    assert sms_cost(normalised).encoding == "GSM-7"


LONGEST = {
    "reference": "LB-WWWWWWWW",
    "country": "other",
    "outcome": "unreachable",
    "stage": "documents_needed",
    "deadline": "30-12-2026",
}
MESSAGES = {
    "case_received",
    "referral_accepted",
    "documents_needed",
    "deadline_approaching",
    "case_closed",
    "status_reply",
    "status_unknown",
    "opted_out",
    "opted_in",
}


def test_shipped_templates_stay_in_gsm7_and_two_parts() -> None:
    catalogue, warnings = load_catalogue()
    assert warnings == []  # a template leaving GSM-7 fails here
    assert {"id", "en"} <= set(catalogue.templates)
    for language, templates in catalogue.templates.items():
        assert set(templates) == MESSAGES, language
        for name in templates:
            body, used = catalogue.render(name, language, **LONGEST)
            assert used == language
            cost = sms_cost(body)
            assert cost.encoding == "GSM-7", (language, name)
            assert cost.segments <= 2, (language, name)
            assert "{" not in body


def test_coded_values_are_said_in_her_language() -> None:
    catalogue, _ = load_catalogue()
    body, _ = catalogue.render("referral_accepted", "id", reference="LB-7K3Q9", country="SG")
    assert "pengacara di Singapura" in body
    body, _ = catalogue.render("case_closed", "en", reference="LB-7K3Q9", outcome="settled")
    assert "Outcome: a settlement was reached." in body
    body, _ = catalogue.render("referral_accepted", "en", reference="LB-7K3Q9", country="TW")
    assert "in the destination country" in body


def test_a_chinese_character_makes_the_message_ucs2_with_its_segment_count() -> None:
    catalogue, warnings = load_catalogue(
        "en",
        {
            "en": '[referral_accepted]\ntext = "Case {reference}: lawyer in {country}."\n'
            '[words]\n"country.HK" = "Hong Kong \u9999\u6e2f"\n'
        },
    )
    assert "en/referral_accepted leaves GSM-7 (sent as UCS-2)" in warnings
    body, _ = catalogue.render("referral_accepted", "en", reference="LB-7K3Q9", country="HK")
    assert body == "Case LB-7K3Q9: lawyer in Hong Kong \u9999\u6e2f."
    assert (sms_cost(body).encoding, sms_cost(body).segments) == ("UCS-2", 1)
    assert sms_cost(body + "x" * 70).segments == 2  # 107 UCS-2 characters: 67 + 40


def test_a_word_placeholder_needs_words() -> None:
    with pytest.raises(TemplateError, match=r"en/x: no \[words\] for \{country\}"):
        load_catalogue("en", {"en": '[x]\ntext = "{reference} {country}"'})


def test_unknown_language_falls_back_to_the_default() -> None:
    catalogue, _ = load_catalogue("en")
    body, used = catalogue.render("case_received", "tl", reference="LB-7K3Q9")
    assert used == "en"
    assert "LB-7K3Q9" in body


def test_unknown_placeholder_is_refused_naming_the_template() -> None:
    with pytest.raises(TemplateError, match="en/case_received: unknown placeholder"):
        load_catalogue("en", {"en": '[case_received]\ntext = "Hi {name}, {reference}"'})


def test_template_leaving_gsm7_is_reported() -> None:
    _, warnings = load_catalogue("en", {"en": '[x]\ntext = "雇主 {reference}"'})
    assert warnings == ["en/x leaves GSM-7 (sent as UCS-2)"]


def test_too_long_template_is_refused() -> None:
    with pytest.raises(TemplateError, match="SMS parts"):
        load_catalogue("en", {"en": f'[x]\ntext = "{"a" * 300} {{reference}}"'})
