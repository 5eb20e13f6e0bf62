"""Intake listens to routing and notify news about its cases (status and timeline), and
to the SMS preferences workers text to notify (announced on the cases topic)."""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from lintas_shared import events as ev
from lintas_shared import topics
from lintas_shared.consumer import (
    EventConsumer,
    FetchPolicy,
    RawPublisher,
    RawRecord,
    subscribe,
)

from lintas_intake.handlers import NOTIFY_SOURCE, CaseService

REFERRAL_NEWS = (
    ev.ReferralOffered,
    ev.CaseRoutingBlocked,
    ev.ReferralAccepted,
    ev.ReferralDeclined,
    ev.ReferralExpired,
    ev.ReferralWithdrawn,
    ev.ReferralProgressed,
    ev.ReferralClosed,
    ev.DeadlineApproaching,
)
NOTIFY_NEWS = (ev.SmsSent, ev.SmsDeliveryReported)


class NotifyPreferences(EventConsumer):
    """Reads intake's own cases topic for notify's SmsPreferenceChanged only: records an
    older notify put there before it announced texted preferences on its own topic
    (`SmsPreferenceTexted`); notify can no longer write to this topic.

    Every other record there (intake's own events, other producers' poison) is passed
    over by its `ce_type` and `ce_source` headers alone, before any parsing: the
    consumers those records are for handle (or park) them.
    """

    async def consume(self, record: RawRecord) -> None:
        """Handle notify's news of a texted SMS preference; skip anything else."""
        headers = record.headers
        if (
            headers.get("ce_type") != ev.SmsPreferenceChanged.TYPE
            or headers.get("ce_source") != NOTIFY_SOURCE
        ):
            return
        await super().consume(record)


def cases_group(group_id: str) -> str:
    """The consumer group intake reads its own cases topic in (for notify's news)."""
    return f"{group_id}.cases"


def register_subscribers(
    broker: KafkaBroker,
    *,
    group_id: str,
    service: CaseService,
    dead_letters: RawPublisher,
    fetch: FetchPolicy,
) -> list[EventConsumer]:
    """Subscribe intake to referral and notification events; returns the consumers.

    One consumer reads both topics: a new case's two news (referral offered, SMS sent)
    come within a few tens of milliseconds of each other, so a batch usually holds both
    and the case is written once for them (`CaseService.apply_news_together`)."""
    news = REFERRAL_NEWS + NOTIFY_NEWS
    handlers = {k.TYPE: service.apply_news for k in news}
    handlers[ev.SmsPreferenceTexted.TYPE] = service.apply_sms_preference
    consumer = EventConsumer(
        "intake-news",
        handlers,
        dead_letters=dead_letters,
        chain=service.apply_news_together,
        chain_types=[k.TYPE for k in news],
    )
    subscribe(
        broker,
        {
            topics.REFERRALS: [k.TYPE for k in REFERRAL_NEWS],
            topics.NOTIFICATIONS: [k.TYPE for k in (*NOTIFY_NEWS, ev.SmsPreferenceTexted)],
        },
        group_id=group_id,
        consumer=consumer,
        fetch=fetch,
    )
    consumers = [consumer]
    # Intake's own topic, for an older notify's SmsPreferenceChanged only (its own are
    # skipped);
    # a group of its own, so its rebalances never stall the news above.
    preferences = NotifyPreferences(
        "intake-cases",
        {ev.SmsPreferenceChanged.TYPE: service.apply_sms_preference},
        dead_letters=dead_letters,
    )
    subscribe(
        broker, topics.CASES, group_id=cases_group(group_id), consumer=preferences, fetch=fetch
    )
    consumers.append(preferences)
    return consumers
