"""Referral listens to new cases."""

from __future__ import annotations

from functools import partial

from faststream.kafka import KafkaBroker
from lintas_shared import topics
from lintas_shared.consumer import EventConsumer, RawPublisher, subscribe
from lintas_shared.events import CaseSubmitted

from lintas_referral import handlers
from lintas_referral.handlers import PartnerDirectory, RoutingRepository


def register_subscribers(
    broker: KafkaBroker,
    *,
    group_id: str,
    routings: RoutingRepository,
    partners: PartnerDirectory,
    dead_letters: RawPublisher,
) -> EventConsumer:
    """Subscribe referral to case events; returns the consumer."""
    consumer = EventConsumer(
        "referral",
        {
            CaseSubmitted.TYPE: partial(
                handlers.on_case_submitted, routings=routings, partners=partners
            )
        },
        dead_letters=dead_letters,
    )
    subscribe(broker, topics.CASES, group_id=group_id, consumer=consumer)
    return consumer
