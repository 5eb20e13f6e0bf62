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


def test_shipped_templates_stay_in_gsm7_and_two_parts() -> None:
    catalogue, warnings = load_catalogue()
    assert warnings == []
    assert {"id", "en"} <= set(catalogue.templates)
    for language, templates in catalogue.templates.items():
        for name in templates:
            body, used = catalogue.render(name, language, reference="LB-WWWWWWWW")
            assert used == language
            assert sms_cost(body).segments <= 2


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
