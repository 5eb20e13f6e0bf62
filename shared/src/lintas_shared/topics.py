"""Kafka topic names. The version is part of the name: a breaking change is a new topic."""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

CASES: Final = "lintas.cases.v1"
REFERRALS: Final = "lintas.referrals.v1"
NOTIFICATIONS: Final = "lintas.notifications.v1"

DLQ_SUFFIX: Final = ".dlq"

#: Settings of every dead-letter topic: `lintas_shared.kafka.ensure_topics` creates it with
#: them, and gives them to an existing one that does not set them itself.
#:
#: Unlimited retention, by time and by size (-1), not the broker's default (7 days in our
#: stacks) nor another fixed window such as 30 days. A dead letter is work waiting for a
#: person (`lintas dlq`): there is no age after which losing it unseen is right, a fix can
#: take longer than any window (holidays, a bug waiting for a release), and the consumer
#: has moved past the record in its source topic, so the dead letter is the copy a replay
#: needs. The cost is small and bounded: only failures are parked, a parked value is at
#: most ~900 KB (larger ones are cut to 64 KiB), and an event's personal fields are sealed
#: with its case's key, so erasing a case makes its dead letters unreadable like every
#: other copy in Kafka. An operator who must reclaim space sets `retention.ms` on the
#: topic itself; ensure_topics leaves a topic's own setting alone.
DLQ_TOPIC_CONFIG: Final[Mapping[str, str]] = MappingProxyType(
    {"retention.ms": "-1", "retention.bytes": "-1"}
)


def dead_letter_topic(topic: str) -> str:
    """The topic where records from `topic` that could not be processed are parked."""
    return f"{topic}{DLQ_SUFFIX}"


def is_dead_letter_topic(topic: str) -> bool:
    """Whether `topic` is a dead-letter topic."""
    return topic.endswith(DLQ_SUFFIX)


SOURCE_TOPICS: Final = (CASES, REFERRALS, NOTIFICATIONS)
ALL_TOPICS: Final = SOURCE_TOPICS + tuple(dead_letter_topic(t) for t in SOURCE_TOPICS)
