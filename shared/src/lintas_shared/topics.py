"""Kafka topic names. The version is part of the name: a breaking change is a new topic."""

from typing import Final

CASES: Final = "lintas.cases.v1"
REFERRALS: Final = "lintas.referrals.v1"
NOTIFICATIONS: Final = "lintas.notifications.v1"

DLQ_SUFFIX: Final = ".dlq"


def dead_letter_topic(topic: str) -> str:
    """The topic where records from `topic` that could not be processed are parked."""
    return f"{topic}{DLQ_SUFFIX}"


SOURCE_TOPICS: Final = (CASES, REFERRALS, NOTIFICATIONS)
ALL_TOPICS: Final = SOURCE_TOPICS + tuple(dead_letter_topic(t) for t in SOURCE_TOPICS)
