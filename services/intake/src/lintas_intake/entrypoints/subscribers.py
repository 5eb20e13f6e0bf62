"""Intake listens to routing news about its cases."""

from __future__ import annotations

from functools import partial

from faststream.kafka import KafkaBroker
from lintas_shared import topics
from lintas_shared.consumer import EventConsumer, RawPublisher, subscribe
from lintas_shared.events import CaseRoutingBlocked, ReferralOffered

from lintas_intake import handlers
from lintas_intake.handlers import CaseRepository


def register_subscribers(
    broker: KafkaBroker, *, group_id: str, cases: CaseRepository, dead_letters: RawPublisher
) -> EventConsumer:
    """Subscribe intake to referral events; returns the consumer (for metrics and tests)."""
    consumer = EventConsumer(
        "intake",
        {
            ReferralOffered.TYPE: partial(handlers.on_referral_offered, cases=cases),
            CaseRoutingBlocked.TYPE: partial(handlers.on_routing_blocked, cases=cases),
        },
        dead_letters=dead_letters,
    )
    subscribe(broker, topics.REFERRALS, group_id=group_id, consumer=consumer)
    return consumer
