"""Kafka topic names. The version is part of the name: a breaking change is a new topic."""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

CASES: Final = "lintas.cases.v1"
REFERRALS: Final = "lintas.referrals.v1"
NOTIFICATIONS: Final = "lintas.notifications.v1"

DLQ_SUFFIX: Final = ".dlq"

#: How long a dead letter is kept by default (`LINTAS_DLQ_RETENTION_DAYS`).
DLQ_RETENTION_DAYS_DEFAULT: Final = 30


class DeadLetterSettings(BaseSettings):
    """`LINTAS_DLQ_RETENTION_DAYS`: how long dead-letter topics keep their records."""

    model_config = SettingsConfigDict(env_prefix="LINTAS_DLQ_", extra="ignore")

    retention_days: int = Field(default=DLQ_RETENTION_DAYS_DEFAULT, ge=1)


def dead_letter_config(retention_days: int) -> Mapping[str, str]:
    """The settings of a dead-letter topic that keeps records `retention_days` days."""
    return MappingProxyType(
        {"retention.ms": str(retention_days * 86_400_000), "retention.bytes": "-1"}
    )


#: Settings of every dead-letter topic: `lintas_shared.kafka.ensure_topics` creates it with
#: them, and gives them to an existing one that does not set them itself (or still has
#: the unlimited `-1` retention of earlier versions).
#:
#: A finite retention by time (30 days unless `LINTAS_DLQ_RETENTION_DAYS` says otherwise),
#: unlimited by size. A dead letter is work waiting for a person (`lintas dlq`), and the
#: consumer has moved past the record in its source topic, so the window must cover a
#: fix that takes a while (holidays, a bug waiting for a release). But a dead letter is
#: a copy of an event, and erasure (issue #15) must leave nothing linkable anywhere: an
#: unlimited topic would keep a case's ids and timings for ever, long after the case was
#: erased. Its sealed fields are noise once the case key is destroyed; the retention
#: bounds the rest. A dead letter still unhandled near the end of the window must be
#: replayed or parked elsewhere by an operator (`lintas dlq list` shows the oldest). An
#: operator's own finite `retention.ms` on a topic stays; ensure_topics leaves it alone.
DLQ_TOPIC_CONFIG: Final[Mapping[str, str]] = dead_letter_config(DeadLetterSettings().retention_days)


def dead_letter_topic(topic: str) -> str:
    """The topic where records from `topic` that could not be processed are parked."""
    return f"{topic}{DLQ_SUFFIX}"


def is_dead_letter_topic(topic: str) -> bool:
    """Whether `topic` is a dead-letter topic."""
    return topic.endswith(DLQ_SUFFIX)


SOURCE_TOPICS: Final = (CASES, REFERRALS, NOTIFICATIONS)
#: How many times longer than the others the consumers of a topic let the broker gather
#: a batch (`FetchPolicy`). Referral writes a case's offer in reaction to its submission,
#: and notify reads both topics: when both waited alike, notify met the offer before the
#: case in 30-60% of the cases at 2 a second, each costing about five store commands
#: more (the offer waits in the case's document); waiting 2.5 times as long on
#: referrals, about 5%.
FETCH_WAIT_FACTOR: Final[Mapping[str, float]] = {REFERRALS: 2.5}
ALL_TOPICS: Final = SOURCE_TOPICS + tuple(dead_letter_topic(t) for t in SOURCE_TOPICS)
