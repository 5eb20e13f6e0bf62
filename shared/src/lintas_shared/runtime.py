"""The lifecycle every service shares: connect, consume, relay, and shut down gracefully.

Also what an operator asks of a running service: is it ready (store, broker, consumer
assignment), and its consumers' lag for `/metrics`.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from faststream.kafka import KafkaBroker
from pymongo import AsyncMongoClient

from lintas_shared.asyncapi import service_document
from lintas_shared.consumer import subscriptions
from lintas_shared.http import ReadinessCheck
from lintas_shared.kafka import ensure_topics
from lintas_shared.kafka_access import ACCESS
from lintas_shared.kafka_auth import KafkaAuth
from lintas_shared.logging import get_logger
from lintas_shared.metrics import CONSUMER_LAG, subscriber_consumers
from lintas_shared.mongo import Document, ping
from lintas_shared.outbox import OutboxRelay
from lintas_shared.settings import DEFAULT_SHUTDOWN_STEP_SECONDS
from lintas_shared.topics import ALL_TOPICS
from lintas_shared.tracing import configure_tracing

log = get_logger(__name__)


@dataclass
class ServiceRuntime:
    """What a running service owns: its store client, its broker and its outbox relays."""

    name: str
    mongo: AsyncMongoClient[Document]
    broker: KafkaBroker
    kafka_bootstrap: str
    topic_partitions: int
    relays: Sequence[OutboxRelay] = field(default_factory=list)
    version: str = "0.1.0"
    #: Who the service logs in to Kafka as; None: as `LINTAS_KAFKA_*` say.
    kafka_auth: KafkaAuth | None = None
    #: `LINTAS_GC_YOUNG_THRESHOLD` (see `settle_heap`); 0 leaves the collector alone.
    gc_young_threshold: int = 0
    #: `LINTAS_SHUTDOWN_STEP_SECONDS`: the longest each step of `stop` may take.
    shutdown_step_seconds: float = DEFAULT_SHUTDOWN_STEP_SECONDS

    async def start(self) -> None:
        """Create topics, start consuming, start the relays (in that order)."""
        configure_tracing(self.name)
        # Only the topics it uses: its principal may see no others.
        access = ACCESS.get(self.name)
        await ensure_topics(
            self.kafka_bootstrap,
            access.topics if access else ALL_TOPICS,
            partitions=self.topic_partitions,
            auth=self.kafka_auth,
        )
        await self.broker.start()
        for relay in self.relays:
            relay.start()
        CONSUMER_LAG.track(self.broker)
        if self.gc_young_threshold:
            settle_heap(self.gc_young_threshold)
        log.info("service started", service=self.name)

    async def stop(self) -> None:
        """Stop consuming (in-flight handlers finish), flush the outbox, then disconnect.

        Each step gets at most `shutdown_step_seconds`: a consumer leaving its group in
        the middle of a rebalance has been seen waiting for minutes, and a service told
        to stop must stop. Cutting a step short loses nothing: unacknowledged records
        come again to the group's next member, and what the relays did not publish
        stays in the outbox for the next start (consumers are idempotent)."""
        CONSUMER_LAG.untrack(self.broker)
        # Subscribers first: the producer must stay open for the relays' final flush.
        await self._step(
            "stop consuming", *(subscriber.stop() for subscriber in self.broker.subscribers)
        )
        await self._step("flush the outbox", *(relay.stop(flush=True) for relay in self.relays))
        await self._step("disconnect from Kafka", self.broker.stop())
        await self.mongo.close()
        log.info("service stopped", service=self.name)

    async def _step(self, name: str, *stops: Coroutine[Any, Any, object]) -> None:
        """Run a step's stops side by side for at most `shutdown_step_seconds`; those
        still running then are logged (with where they wait) and cancelled. A Kafka
        consumer cut short this way has not left its group: the broker drops it once its
        heartbeats stop (the session timeout, 10 s), as for a crashed instance."""
        tasks = [asyncio.ensure_future(stop) for stop in stops]
        if not tasks:
            return
        try:
            _done, pending = await asyncio.wait(tasks, timeout=self.shutdown_step_seconds)
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()  # as `gather` would: nothing of a cancelled stop runs on
            raise
        for task in pending:
            frames = _waiting_in(task)
            log.warning(
                "shutdown step cut short",
                service=self.name,
                step=name,
                seconds=self.shutdown_step_seconds,
                waiting_in=frames,
            )
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in tasks:
            if task not in pending:
                task.result()  # a stop that failed fails the shutdown, as before

    async def store_ready(self) -> bool:
        """The store answers a ping."""
        return await ping(self.mongo)

    async def broker_ready(self) -> bool:
        """The Kafka broker answers."""
        try:
            return bool(await self.broker.ping(timeout=2.0))
        except Exception:
            return False

    async def consumers_ready(self) -> bool:
        """Every subscriber's consumer runs and has partitions assigned.

        False before the group's first assignment and during a rebalance. A member of a
        group with more members than partitions stays unassigned, so not ready: run at
        most as many instances of a service as its topics have partitions.
        """
        return all(
            consumer is not None and bool(consumer.assignment())
            for _group, consumer in subscriber_consumers(self.broker)
        )

    def readiness(self) -> Mapping[str, ReadinessCheck]:
        """The checks behind `/readyz`: the store, Kafka, and the consumers' assignment."""
        return {
            "store": self.store_ready,
            "kafka": self.broker_ready,
            "consumers": self.consumers_ready,
        }

    def asyncapi(self) -> Any:
        """This service's AsyncAPI 3.0 document: the events it sends and, from its
        subscriptions, those it receives (see `lintas_shared.asyncapi`)."""
        return service_document(self.name, subscriptions(self.broker), version=self.version)

    @asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        """FastAPI lifespan: the service runs between start and stop."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()


def _waiting_in(task: asyncio.Future[Any], limit: int = 24) -> list[str]:
    """Where a task waits: the functions (`name:line`) down its chain of awaits, and on
    into the task it awaits, if it awaits one (`Task.get_stack` shows a coroutine's
    outermost frame only). For a log line: names and lines, never values."""
    frames: list[str] = []
    current: Any = task
    while isinstance(current, asyncio.Task) and len(frames) < limit:
        awaited: Any = current.get_coro()
        while awaited is not None and len(frames) < limit:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is None:
                break
            frames.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        # What the task waits on (asyncio's own attribute, in both its implementations).
        current = getattr(current, "_fut_waiter", None)
    return frames


_HEAP_SETTLED = False


def settle_heap(young_threshold: int) -> None:
    """Once start-up is done: set aside from the garbage collector what start-up made
    (modules, schemas, settings: every later full collection walked them all again, for
    nothing), and collect the youngest generation every `young_threshold` allocations.

    Once a process: what is set aside is never freed, so a process that starts several
    apps (a test run) sets aside only what the first start left."""
    global _HEAP_SETTLED
    if _HEAP_SETTLED:
        return
    _HEAP_SETTLED = True
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, oldest)
