"""Referral listens to case events: thin subscribers that parse and call a handler."""

from __future__ import annotations

from functools import partial

from faststream.kafka import KafkaBroker
from lintas_shared import topics
from lintas_shared.consumer import EventConsumer, RawPublisher, subscribe
from lintas_shared.events import (
    CaseClosed,
    CaseErased,
    CaseSubmitted,
    ConsentRecorded,
    ConsentWithdrawn,
)

from lintas_referral import handlers
from lintas_referral.handlers import Referrals


def register_subscribers(
    broker: KafkaBroker, *, group_id: str, ctx: Referrals, dead_letters: RawPublisher
) -> EventConsumer:
    """Subscribe referral to case events; returns the consumer."""
    consumer = EventConsumer(
        "referral",
        {
            CaseSubmitted.TYPE: partial(handlers.on_case_submitted, ctx=ctx),
            ConsentRecorded.TYPE: partial(handlers.on_consent_recorded, ctx=ctx),
            ConsentWithdrawn.TYPE: partial(handlers.on_consent_withdrawn, ctx=ctx),
            CaseClosed.TYPE: partial(handlers.on_case_closed, ctx=ctx),
            CaseErased.TYPE: partial(handlers.on_case_erased, ctx=ctx),
        },
        dead_letters=dead_letters,
    )
    subscribe(broker, topics.CASES, group_id=group_id, consumer=consumer)
    return consumer
