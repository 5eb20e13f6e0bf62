"""How an SMS is laid out for SMPP: data_coding, GSM-7 octets, concatenated parts."""

from __future__ import annotations

import pytest
from lintas_notify.domain.encoding import sms_cost
from lintas_notify.domain.smpp_parts import decode_gsm7, smpp_message

pytestmark = pytest.mark.unit


def test_one_gsm7_sms_is_one_unpacked_part() -> None:
    message = smpp_message("Kasus LB-7K3Q9 @ €", reference=1)
    assert (message.data_coding, message.esm_class) == (0, 0)
    [part] = message.parts
    assert part.startswith(b"Kasus LB-7K3Q9 \x00")  # '@' is code 0
    assert part.endswith(b"\x1b\x65")  # '€' is ESC + 0x65
    assert decode_gsm7(part) == "Kasus LB-7K3Q9 @ €"


def test_a_long_gsm7_text_is_cut_into_udh_parts_without_splitting_an_escape() -> None:
    text = "a" * 152 + "€" + "b" * 152
    message = smpp_message(text, reference=0x2A)
    assert message.esm_class == 0x40
    assert len(message.parts) == sms_cost(text).segments == 3
    assert [p[:6] for p in message.parts] == [bytes([5, 0, 3, 0x2A, 3, n]) for n in (1, 2, 3)]
    assert message.parts[0][6:] == b"a" * 152  # the escape pair moved whole to part 2
    assert "".join(decode_gsm7(p[6:]) for p in message.parts) == text


def test_a_chinese_character_makes_it_ucs2_in_67_character_parts() -> None:
    text = "Majikan 雇主 " + "x" * 70
    message = smpp_message(text, reference=7)
    assert message.data_coding == 8
    assert len(message.parts) == sms_cost(text).segments == 2
    assert len(message.parts[0]) == 6 + 67 * 2
    assert b"".join(p[6:] for p in message.parts).decode("utf-16-be") == text
