"""Intake listens to routing and notify news about its cases (status and timeline), and
to the SMS preferences workers text to notify (announced on the cases topic)."""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from lintas_shared import events as ev
from lintas_shared import topics
from lintas_shared.consumer import EventConsumer, RawPublisher, subscribe

from lintas_intake.handlers import CaseService

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


def cases_group(group_id: str) -> str:
    """The consumer group intake reads its own cases topic in (for notify's news)."""
    return f"{group_id}.cases"


def register_subscribers(
    broker: KafkaBroker, *, group_id: str, service: CaseService, dead_letters: RawPublisher
) -> list[EventConsumer]:
    """Subscribe intake to referral and notification events; returns the consumers."""
    consumers = []
    for name, topic, kinds in (
        ("intake-referrals", topics.REFERRALS, REFERRAL_NEWS),
        ("intake-notifications", topics.NOTIFICATIONS, NOTIFY_NEWS),
    ):
        consumer = EventConsumer(
            name, {k.TYPE: service.apply_news for k in kinds}, dead_letters=dead_letters
        )
        subscribe(broker, topic, group_id=group_id, consumer=consumer)
        consumers.append(consumer)
    # Intake's own topic, for notify's SmsPreferenceChanged only (its own are skipped);
    # a group of its own, so its rebalances never stall the news above.
    preferences = EventConsumer(
        "intake-cases",
        {ev.SmsPreferenceChanged.TYPE: service.apply_sms_preference},
        dead_letters=dead_letters,
    )
    subscribe(broker, topics.CASES, group_id=cases_group(group_id), consumer=preferences)
    consumers.append(preferences)
    return consumers
