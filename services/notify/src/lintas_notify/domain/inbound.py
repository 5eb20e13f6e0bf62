"""What a worker's inbound SMS asks for: opt out, opt back in, or her case's status."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from lintas_shared.ids import REFERENCE_ALPHABET, REFERENCE_PREFIX


class Intent(StrEnum):
    """The kinds of inbound message notify acts on."""

    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    STATUS = "status"
    UNKNOWN = "unknown"


OPT_OUT_WORDS: Final = {"STOP": "en", "UNSUBSCRIBE": "en", "BERHENTI": "id"}
OPT_IN_WORDS: Final = {"START": "en", "MULAI": "id"}
STATUS_WORDS: Final = {"STATUS": None, "CEK": "id"}
_CODE: Final = re.compile(rf"^[{REFERENCE_ALPHABET}]{{4,10}}$")


@dataclass(frozen=True)
class InboundRequest:
    """A parsed inbound SMS: the intent, the case reference if any, a language hint."""

    intent: Intent
    reference: str | None = None
    language_hint: str | None = None


def parse_inbound(body: str) -> InboundRequest:
    """Read an inbound SMS; keywords are matched in any case, ignoring spaces around them.

    "STATUS LB-7K3Q9", "status lb 7k3q9" and a bare "LB-7K3Q9" all ask for a status.
    """
    words = body.strip().upper().split()
    if not words:
        return InboundRequest(Intent.UNKNOWN)
    text = " ".join(words)
    if text in OPT_OUT_WORDS:
        return InboundRequest(Intent.OPT_OUT, language_hint=OPT_OUT_WORDS[text])
    if text in OPT_IN_WORDS:
        return InboundRequest(Intent.OPT_IN, language_hint=OPT_IN_WORDS[text])
    hint, keyword = None, words[0] in STATUS_WORDS
    if keyword:
        hint = STATUS_WORDS[words[0]]
        words = words[1:]
    # Without the keyword only a prefixed reference counts: "KAPAN" is a word, not a code.
    reference = _reference("".join(words).replace("-", ""), prefix_required=not keyword)
    if reference is not None:
        return InboundRequest(Intent.STATUS, reference, hint)
    return InboundRequest(Intent.UNKNOWN, language_hint=hint)


def _reference(compact: str, *, prefix_required: bool) -> str | None:
    prefix = REFERENCE_PREFIX.rstrip("-")
    if compact.startswith(prefix):
        compact = compact[len(prefix) :]
    elif prefix_required:
        return None
    return f"{REFERENCE_PREFIX}{compact}" if _CODE.match(compact) else None
