"""Reading what a worker texts: opt-out and opt-in keywords, STATUS requests."""

from __future__ import annotations

import pytest
from lintas_notify.domain.inbound import InboundRequest, Intent, parse_inbound

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("STOP", InboundRequest(Intent.OPT_OUT, language_hint="en")),
        ("  stop \n", InboundRequest(Intent.OPT_OUT, language_hint="en")),
        ("Berhenti", InboundRequest(Intent.OPT_OUT, language_hint="id")),
        ("UNSUBSCRIBE", InboundRequest(Intent.OPT_OUT, language_hint="en")),
        ("start", InboundRequest(Intent.OPT_IN, language_hint="en")),
        (" MULAI ", InboundRequest(Intent.OPT_IN, language_hint="id")),
        ("STATUS LB-7K3Q9", InboundRequest(Intent.STATUS, "LB-7K3Q9")),
        ("status lb-7k3q9", InboundRequest(Intent.STATUS, "LB-7K3Q9")),
        ("Status LB 7K3Q9", InboundRequest(Intent.STATUS, "LB-7K3Q9")),
        ("STATUS 7K3Q9", InboundRequest(Intent.STATUS, "LB-7K3Q9")),
        ("LB-7K3Q9", InboundRequest(Intent.STATUS, "LB-7K3Q9")),
        (" lb-7k3q9 ", InboundRequest(Intent.STATUS, "LB-7K3Q9")),
        ("cek LB-7K3Q9", InboundRequest(Intent.STATUS, "LB-7K3Q9", "id")),
        ("KAPAN", InboundRequest(Intent.UNKNOWN)),  # a word, not a reference
        ("STOP please", InboundRequest(Intent.UNKNOWN)),
        ("STATUS", InboundRequest(Intent.UNKNOWN)),
        ("STATUS LB-7K3Q0", InboundRequest(Intent.UNKNOWN)),  # 0 is not in the alphabet
        ("", InboundRequest(Intent.UNKNOWN)),
    ],
)
def test_parse_inbound(body: str, expected: InboundRequest) -> None:
    assert parse_inbound(body) == expected
