"""Notify listens to case events."""

from __future__ import annotations

from functools import partial

from faststream.kafka import KafkaBroker
from lintas_shared import topics
from lintas_shared.consumer import EventConsumer, RawPublisher, subscribe
from lintas_shared.events import CaseSubmitted

from lintas_notify import handlers
from lintas_notify.domain.templates import TemplateCatalogue
from lintas_notify.handlers import CaseKeyReader, MessageRepository, SmsProvider


def register_subscribers(
    broker: KafkaBroker,
    *,
    group_id: str,
    messages: MessageRepository,
    provider: SmsProvider,
    catalogue: TemplateCatalogue,
    keys: CaseKeyReader,
    dead_letters: RawPublisher,
) -> EventConsumer:
    """Subscribe notify to case events; returns the consumer."""
    consumer = EventConsumer(
        "notify",
        {
            CaseSubmitted.TYPE: partial(
                handlers.on_case_submitted,
                messages=messages,
                provider=provider,
                catalogue=catalogue,
                keys=keys,
            )
        },
        dead_letters=dead_letters,
    )
    subscribe(broker, topics.CASES, group_id=group_id, consumer=consumer)
    return consumer
