"""Prometheus metrics every service exposes on `GET /metrics`.

Labels carry only bounded, non-personal values: event types, topics, consumer names,
outcomes, route templates, status codes, partition numbers. Never a case id, a phone,
a raw URL path or an error message.

Most series are counters and histograms updated where the work happens. Three are
read at scrape time from what the process already knows, without querying the store:
- the outbox backlog and the age of its oldest entry come from each relay's own view
  (the documents writers named and its periodic sweep found, not yet published): on
  FerretDB v1 any filter other than `_id` scans the whole collection, so counting
  pending documents on every scrape would cost a scan each time;
- consumer lag per partition is the broker's high watermark, as of the consumer's last
  fetch, minus the next offset to process (what this process last handled, else the
  group's committed offset), refreshed by `refresh()` just before rendering.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Iterable, Iterator
from typing import Any, Final, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lintas_shared.logging import get_logger

log = get_logger(__name__)

# `_created` series double the scrape for no use here.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: How `lintas_events_consumed_total` ends for one record of a handled type.
OUTCOME_OK: Final = "ok"  # handled at the first attempt
OUTCOME_RETRIED: Final = "retried"  # handled after one or more retries
OUTCOME_DLQ: Final = "dlq"  # parked in the dead-letter topic
OUTCOME_REDELIVERED: Final = "redelivered"  # store or broker down: left for redelivery
#: The `type` label of a record that is not a valid CloudEvent (its ce_type is untrusted).
MALFORMED_TYPE: Final = "<malformed>"
#: The `route` label of a request no route matched (its raw path could hold anything).
UNMATCHED_ROUTE: Final = "<unmatched>"
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
#: A scrape waits at most this long for a partition's committed offset.
_COMMITTED_TIMEOUT: Final = 2.0

EVENTS_CONSUMED = Counter(
    "lintas_events_consumed",
    "Records of a handled event type consumed, by how their handling ended.",
    ["consumer", "topic", "type", "outcome"],
)
HANDLER_DURATION = Histogram(
    "lintas_event_handler_duration_seconds",
    "Time from receiving a record to its outcome, retries and backoff included.",
    ["consumer", "type"],
)
EVENTS_PUBLISHED = Counter(
    "lintas_events_published",
    "Events published to Kafka (acknowledged by the broker).",
    ["topic", "type"],
)
DEAD_LETTERS = Counter(
    "lintas_dead_letters",
    "Records parked in a dead-letter topic, by reason (malformed, rejected, failed).",
    ["consumer", "topic", "reason"],
)
STORE_COMMANDS = Counter(
    "lintas_store_commands",
    "Commands this process sent to the store, by collection and command (the bench reads "
    "them per service; connection upkeep such as hello and ping is left out).",
    ["collection", "command"],
)
OUTBOX_RELAY_FAILURES = Counter(
    "lintas_outbox_relay_failures",
    "Outbox relay passes that failed (broker or store unavailable); entries are kept.",
    ["collection"],
)
HTTP_REQUESTS = Counter(
    "lintas_http_requests",
    "HTTP requests by route template and status code.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "lintas_http_request_duration_seconds",
    "HTTP request duration until the response headers, by route template.",
    ["method", "route"],
)


# --- outbox backlog --------------------------------------------------------------------


class BacklogSource(Protocol):
    """An outbox relay as the backlog collector sees it."""

    @property
    def collection_name(self) -> str:
        """The collection whose outbox it relays."""
        ...

    def pending(self) -> tuple[int, float | None]:
        """Documents known to hold unpublished entries, and the oldest one's Unix time."""
        ...


class _OutboxCollector(Collector):
    def __init__(self) -> None:
        self._sources: weakref.WeakSet[Any] = weakref.WeakSet()

    def track(self, source: BacklogSource) -> None:
        self._sources.add(source)

    def untrack(self, source: BacklogSource) -> None:
        self._sources.discard(source)

    def collect(self) -> Iterable[Metric]:
        backlog = GaugeMetricFamily(
            "lintas_outbox_backlog",
            "Documents with outbox entries not yet published, as the relay knows them.",
            labels=["collection"],
        )
        age = GaugeMetricFamily(
            "lintas_outbox_oldest_age_seconds",
            "Age of the oldest outbox entry not yet published (0 when there is none).",
            labels=["collection"],
        )
        now = time.time()
        totals: dict[str, tuple[int, float | None]] = {}
        for source in list(self._sources):
            count, oldest = source.pending()
            known_count, known_oldest = totals.get(source.collection_name, (0, None))
            if known_oldest is None or (oldest is not None and oldest < known_oldest):
                known_oldest = oldest
            totals[source.collection_name] = (known_count + count, known_oldest)
        for name, (count, oldest) in sorted(totals.items()):
            backlog.add_metric([name], count)
            age.add_metric([name], 0.0 if oldest is None else max(0.0, now - oldest))
        yield backlog
        yield age


OUTBOX = _OutboxCollector()
REGISTRY.register(OUTBOX)


# --- consumer lag ----------------------------------------------------------------------


def subscriber_consumers(broker: Any) -> Iterator[tuple[str, Any]]:
    """(group id, aiokafka consumer or None) of each of a FastStream broker's subscribers."""
    for subscriber in broker.subscribers:
        yield (
            str(getattr(subscriber, "group_id", None) or ""),
            getattr(subscriber, "consumer", None),
        )


class _LagCollector(Collector):
    def __init__(self) -> None:
        self._brokers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._next_offset: dict[tuple[str, str, int], int] = {}
        self._lags: dict[tuple[str, str, int], int] = {}
        self._assigned: dict[str, int] = {}

    def track(self, broker: Any) -> None:
        self._brokers.add(broker)

    def untrack(self, broker: Any) -> None:
        self._brokers.discard(broker)

    def processed(self, group: str, topic: str, partition: int, offset: int) -> None:
        self._next_offset[(group, topic, partition)] = offset + 1

    def behind(self, broker: Any, group: str) -> int:
        """Records `group`'s members in this process have still to handle, as far as is
        known without asking the broker: the high watermark of each assigned partition's
        last fetch less the next offset handled there. A partition not fetched yet, or on
        which nothing was handled yet, counts nothing."""
        total = 0
        for member_group, consumer in subscriber_consumers(broker):
            if member_group != group or consumer is None:
                continue
            for tp in consumer.assignment():
                highwater = consumer.highwater(tp)
                handled = self._next_offset.get((group, tp.topic, tp.partition))
                if highwater is not None and handled is not None:
                    total += max(0, highwater - handled)
        return total

    async def refresh(self) -> None:
        """Recompute lag from every tracked broker's consumers (called before a scrape)."""
        highwaters: dict[tuple[str, str, int], int] = {}
        unknown: list[tuple[tuple[str, str, int], Any, Any]] = []
        assigned: dict[str, int] = {}
        for broker in list(self._brokers):
            for group, consumer in subscriber_consumers(broker):
                if consumer is None:
                    continue
                partitions = list(consumer.assignment())
                assigned[group] = assigned.get(group, 0) + len(partitions)
                for tp in partitions:
                    highwater = consumer.highwater(tp)
                    if highwater is None:
                        continue  # nothing fetched yet for this partition
                    key = (group, tp.topic, tp.partition)
                    highwaters[key] = highwater
                    if key not in self._next_offset:
                        unknown.append((key, consumer, tp))
        # A partition handed elsewhere may come back later, past what we last handled.
        self._next_offset = {k: v for k, v in self._next_offset.items() if k in highwaters}
        next_offsets = dict(self._next_offset)
        if unknown:
            committed = await self._committed([(consumer, tp) for _k, consumer, tp in unknown])
            for (key, _consumer, _tp), offset in zip(unknown, committed, strict=True):
                if offset is not None:
                    next_offsets[key] = offset
        self._lags = {
            key: max(0, highwater - next_offsets[key])
            for key, highwater in highwaters.items()
            if key in next_offsets
        }
        self._assigned = assigned

    @staticmethod
    async def _committed(partitions: list[tuple[Any, Any]]) -> list[int | None]:
        """The groups' committed offsets, asked together; None where the coordinator did
        not answer in time (a scrape must never hang or fail on it)."""

        async def one(consumer: Any, tp: Any) -> int | None:
            try:
                committed = await consumer.committed(tp)
            except Exception as exc:
                log.debug("committed offset unavailable", error=type(exc).__name__)
                return None
            return None if committed is None else int(committed)

        tasks = [asyncio.ensure_future(one(consumer, tp)) for consumer, tp in partitions]
        done, pending = await asyncio.wait(tasks, timeout=_COMMITTED_TIMEOUT)
        for task in pending:
            task.cancel()
        return [task.result() if task in done else None for task in tasks]

    def collect(self) -> Iterable[Metric]:
        lag = GaugeMetricFamily(
            "lintas_consumer_lag",
            "Records on a partition not yet processed by this consumer group's member.",
            labels=["group", "topic", "partition"],
        )
        for (group, topic, partition), value in sorted(self._lags.items()):
            lag.add_metric([group, topic, str(partition)], value)
        assigned = GaugeMetricFamily(
            "lintas_consumer_assigned_partitions",
            "Partitions currently assigned to this process, per consumer group.",
            labels=["group"],
        )
        for group, count in sorted(self._assigned.items()):
            assigned.add_metric([group], count)
        yield lag
        yield assigned


CONSUMER_LAG = _LagCollector()
REGISTRY.register(CONSUMER_LAG)


async def render() -> bytes:
    """The exposition text of every Lintas metric in this process (refreshes lag first)."""
    try:
        await CONSUMER_LAG.refresh()
    except Exception as exc:  # stale lag is better than no metrics at all
        log.warning("consumer lag refresh failed", error=type(exc).__name__)
    return generate_latest(REGISTRY)
