"""Notify listens to case events (intake) and referral events (referral)."""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from lintas_shared import topics
from lintas_shared.consumer import (
    EventConsumer,
    FetchPolicy,
    Lead,
    RawPublisher,
    RetryPolicy,
    subscribe,
)
from lintas_shared.events import (
    CaseClosed,
    CaseDetailsCorrected,
    CaseErased,
    CaseSubmitted,
    DeadlineApproaching,
    ReferralAccepted,
    ReferralClosed,
    ReferralOffered,
    ReferralProgressed,
    SmsPreferenceChanged,
)

from lintas_notify.handlers import NotifyHandlers


def build_consumers(
    handlers: NotifyHandlers, dead_letters: RawPublisher, retry: RetryPolicy | None = None
) -> tuple[EventConsumer, EventConsumer]:
    """The consumers of the cases topic and of the referrals topic."""
    cases = EventConsumer(
        "notify",
        {
            CaseSubmitted.TYPE: handlers.on_case_submitted,
            CaseDetailsCorrected.TYPE: handlers.on_details_corrected,
            SmsPreferenceChanged.TYPE: handlers.on_preference_changed,
            CaseClosed.TYPE: handlers.on_case_closed,
            CaseErased.TYPE: handlers.on_case_erased,
        },
        dead_letters=dead_letters,
        retry=retry,
    )
    referrals = EventConsumer(
        "notify",
        {
            ReferralOffered.TYPE: handlers.on_referral_offered,
            ReferralAccepted.TYPE: handlers.on_referral_accepted,
            ReferralProgressed.TYPE: handlers.on_referral_progressed,
            DeadlineApproaching.TYPE: handlers.on_deadline_approaching,
            ReferralClosed.TYPE: handlers.on_referral_closed,
        },
        dead_letters=dead_letters,
        retry=retry,
    )
    return cases, referrals


def register_subscribers(
    broker: KafkaBroker,
    *,
    group_id: str,
    handlers: NotifyHandlers,
    dead_letters: RawPublisher,
    fetch: FetchPolicy,
    retry: RetryPolicy | None = None,
    cases_first_backlog: int = 200,
) -> tuple[EventConsumer, EventConsumer]:
    """Subscribe notify to both topics, each in its own consumer group. While the cases
    consumer has more than `cases_first_backlog` records left (0: no wait), the referrals
    consumer's batches wait for it (`Lead`): a referral event that overtakes its case's
    `submitted` waits in the store, several writes more for that case."""
    cases, referrals = build_consumers(handlers, dead_letters, retry)
    subscribe(broker, topics.CASES, group_id=group_id, consumer=cases, fetch=fetch)
    # A group per topic: one group's rebalance on one topic never stalls the other.
    subscribe(
        broker,
        topics.REFERRALS,
        group_id=f"{group_id}.referrals",
        consumer=referrals,
        fetch=fetch,
        after=Lead(group_id, records=cases_first_backlog) if cases_first_backlog else None,
    )
    return cases, referrals
