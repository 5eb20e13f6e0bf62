"""Referral listens to case events: thin subscribers that parse and call a handler."""

from __future__ import annotations

from functools import partial

from faststream.kafka import KafkaBroker
from lintas_shared import topics
from lintas_shared.consumer import EventConsumer, FetchPolicy, RawPublisher, subscribe
from lintas_shared.events import (
    CaseClosed,
    CaseDetailsCorrected,
    CaseErased,
    CaseSubmitted,
    ConsentRecorded,
    ConsentWithdrawn,
    DeadlineApproaching,
    ReferralAccepted,
    ReferralClosed,
    ReferralDeclined,
    ReferralExpired,
    ReferralOffered,
    ReferralProgressed,
    ReferralWithdrawn,
)

from lintas_referral import handlers, webhooks
from lintas_referral.handlers import Referrals
from lintas_referral.webhooks import Webhooks

#: The referral events a partner hears about by webhook.
WEBHOOK_EVENT_TYPES = tuple(
    cls.TYPE
    for cls in (
        ReferralOffered,
        ReferralAccepted,
        ReferralDeclined,
        ReferralExpired,
        ReferralWithdrawn,
        ReferralProgressed,
        ReferralClosed,
        DeadlineApproaching,
    )
)


def register_subscribers(
    broker: KafkaBroker,
    *,
    group_id: str,
    ctx: Referrals,
    dead_letters: RawPublisher,
    fetch: FetchPolicy,
) -> EventConsumer:
    """Subscribe referral to case events; returns the consumer."""
    consumer = EventConsumer(
        "referral",
        {
            CaseSubmitted.TYPE: partial(handlers.on_case_submitted, ctx=ctx),
            CaseDetailsCorrected.TYPE: partial(handlers.on_case_details_corrected, ctx=ctx),
            ConsentRecorded.TYPE: partial(handlers.on_consent_recorded, ctx=ctx),
            ConsentWithdrawn.TYPE: partial(handlers.on_consent_withdrawn, ctx=ctx),
            CaseClosed.TYPE: partial(handlers.on_case_closed, ctx=ctx),
            CaseErased.TYPE: partial(handlers.on_case_erased, ctx=ctx),
        },
        dead_letters=dead_letters,
    )
    subscribe(broker, topics.CASES, group_id=group_id, consumer=consumer, fetch=fetch)
    return consumer


def register_webhook_subscriber(
    broker: KafkaBroker,
    *,
    group_id: str,
    hooks: Webhooks,
    dead_letters: RawPublisher,
    fetch: FetchPolicy,
) -> EventConsumer:
    """Turn referral's own events into webhook deliveries (its own consumer group)."""
    on_event = partial(webhooks.on_referral_event, hooks=hooks)
    consumer = EventConsumer(
        "referral-webhooks",
        {event_type: on_event for event_type in WEBHOOK_EVENT_TYPES},
        dead_letters=dead_letters,
    )
    subscribe(
        broker, topics.REFERRALS, group_id=f"{group_id}-webhooks", consumer=consumer, fetch=fetch
    )
    return consumer
