"""Private topics for tests that must not share a topic with the running services."""

from __future__ import annotations

import uuid

from lintas_shared.kafka import ensure_topics
from lintas_shared.topics import dead_letter_topic

_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def private_topic_name() -> str:
    """A fresh topic name of letters only: a run of digits in a name (a uuid's hex can
    have nine in a row) looks like a phone number to the log redaction, which then
    hides it from the very output a test reads back."""
    return "test." + uuid.uuid4().hex[:12].translate(_LETTERS)


async def private_topic(bootstrap: str, partitions: int = 1) -> str:
    """A new topic and its dead-letter topic, for one test."""
    name = private_topic_name()
    await ensure_topics(bootstrap, [name, dead_letter_topic(name)], partitions=partitions)
    return name
