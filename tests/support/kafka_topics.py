"""Private topics for tests that must not share a topic with the running services."""

from __future__ import annotations

import uuid

from lintas_shared.kafka import ensure_topics
from lintas_shared.topics import dead_letter_topic


async def private_topic(bootstrap: str, partitions: int = 1) -> str:
    """A new topic and its dead-letter topic, for one test."""
    name = f"test.{uuid.uuid4().hex[:10]}"
    await ensure_topics(bootstrap, [name, dead_letter_topic(name)], partitions=partitions)
    return name
