"""An SMS as SMPP carries it: data_coding, and parts with a concatenation header (UDH).

GSM-7 travels unpacked, one septet per octet (data_coding 0, the SMSC default
alphabet), the extension characters as ESC + code; UCS-2 as UTF-16BE (data_coding 8).
A message over one SMS is cut into parts of 153 septets or 67 UCS-2 characters, each
led by the 6-octet UDH `05 00 03 <ref> <total> <seq>` with esm_class UDHI (0x40). Parts
never split an escape pair or a surrogate pair, matching `encoding.sms_cost`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from lintas_notify.domain.encoding import sms_cost

#: GSM 03.38 default alphabet, in code order (0x1B, the escape, is a placeholder).
GSM7_TABLE: Final = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_CODES: Final = {c: i for i, c in enumerate(GSM7_TABLE) if c != "\x1b"}
GSM7_EXTENSION_CODES: Final = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}
ESCAPE: Final = 0x1B
DATA_CODING_GSM7: Final = 0x00
DATA_CODING_UCS2: Final = 0x08
ESM_CLASS_UDHI: Final = 0x40


@dataclass(frozen=True)
class SmppMessage:
    """What goes into one or more submit_sm PDUs."""

    data_coding: int
    esm_class: int
    parts: tuple[bytes, ...]  # each part's short_message, UDH included when split


def _gsm7_units(text: str) -> list[bytes]:
    units = []
    for c in text:
        if c in GSM7_CODES:
            units.append(bytes([GSM7_CODES[c]]))
        else:
            units.append(bytes([ESCAPE, GSM7_EXTENSION_CODES[c]]))
    return units


def _ucs2_units(text: str) -> list[bytes]:
    return [c.encode("utf-16-be") for c in text]


def _chunks(units: list[bytes], per_part: int) -> list[bytes]:
    parts: list[bytes] = []
    current = b""
    for unit in units:
        if len(current) + len(unit) > per_part:
            parts.append(current)
            current = b""
        current += unit
    return [*parts, current]


def smpp_message(text: str, reference: int) -> SmppMessage:
    """Encode `text`; `reference` (0-255) ties the parts of one message together."""
    cost = sms_cost(text)
    if cost.encoding == "GSM-7":
        units, single, per_part, coding = _gsm7_units(text), 160, 153, DATA_CODING_GSM7
    else:
        units, single, per_part, coding = _ucs2_units(text), 140, 134, DATA_CODING_UCS2
    if sum(len(u) for u in units) <= single:
        return SmppMessage(coding, 0, (b"".join(units),))
    chunks = _chunks(units, per_part)
    total = len(chunks)
    parts = tuple(
        bytes([0x05, 0x00, 0x03, reference & 0xFF, total, seq]) + chunk
        for seq, chunk in enumerate(chunks, 1)
    )
    return SmppMessage(coding, ESM_CLASS_UDHI, parts)


def decode_gsm7(data: bytes) -> str:
    """Unpacked GSM-7 octets back to text (for receipts and inbound SMS)."""
    reverse_ext = {v: k for k, v in GSM7_EXTENSION_CODES.items()}
    out, escaped = [], False
    for octet in data:
        if escaped:
            out.append(reverse_ext.get(octet, " "))
            escaped = False
        elif octet == ESCAPE:
            escaped = True
        else:
            out.append(GSM7_TABLE[octet & 0x7F])
    return "".join(out)
