"""SMS encoding and segment counting (3GPP TS 23.038).

A message that fits the GSM-7 alphabet costs 160 characters in one SMS or 153 per part
when split; the extension characters take two septets each. One character outside it
switches the whole message to UCS-2: 70 in one SMS, 67 per part.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

GSM7_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION: Final = frozenset("^{}\\[~]|€\f")

# Typography that word processors and phones insert, mapped to GSM-7 equivalents.
_TYPOGRAPHY: Final = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u2010": "-",
        "\u2011": "-",
        "\u00a0": " ",
        "\u2007": " ",
        "\u202f": " ",
        "\u2009": " ",
        "\u200b": "",
        "\u2026": "...",
        "\t": " ",
    }
)

Encoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True)
class SmsCost:
    """How a text travels: its encoding and the number of SMS parts it takes."""

    encoding: Encoding
    segments: int
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2


def normalise_typography(text: str) -> str:
    """Replace curly quotes, dashes, ellipses and odd spaces so plain text stays GSM-7."""
    return text.translate(_TYPOGRAPHY)


def is_gsm7(text: str) -> bool:
    """Whether every character is in the GSM-7 basic or extension table."""
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def _split(units: list[int], single: int, per_part: int) -> int:
    total = sum(units)
    if total <= single:
        return 1
    # A character's units (an escape pair, a surrogate pair) never straddle two parts.
    parts, used = 1, 0
    for size in units:
        if used + size > per_part:
            parts, used = parts + 1, 0
        used += size
    return parts


def sms_cost(text: str) -> SmsCost:
    """The encoding and segment count of `text` as it will be sent."""
    if not text:
        return SmsCost("GSM-7", 1, 0)
    if is_gsm7(text):
        septets = [2 if c in GSM7_EXTENSION else 1 for c in text]
        return SmsCost("GSM-7", _split(septets, 160, 153), sum(septets))
    code_units = [2 if ord(c) > 0xFFFF else 1 for c in text]
    return SmsCost("UCS-2", _split(code_units, 70, 67), sum(code_units))
