"""`ServiceRuntime.stop`: the shutdown's steps in order, each bounded in time, so a
consumer stuck leaving its group cannot keep a service from stopping."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from lintas_shared import runtime
from lintas_shared.runtime import ServiceRuntime

pytestmark = pytest.mark.unit


@dataclass
class Steps:
    done: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)


class Subscriber:
    def __init__(self, name: str, steps: Steps, *, hangs: bool = False) -> None:
        self.name, self.steps, self.hangs = name, steps, hangs

    async def stop(self) -> None:
        if self.hangs:
            await self.leave_group_during_a_rebalance()
        self.steps.done.append(self.name)

    async def leave_group_during_a_rebalance(self) -> None:
        try:
            # As aiokafka awaits its coordination task: the walk follows into it.
            await asyncio.create_task(self.join_group())
        except asyncio.CancelledError:
            self.steps.cancelled.append(self.name)
            raise

    async def join_group(self) -> None:
        await asyncio.Event().wait()  # never set


class Broker:
    def __init__(self, steps: Steps, subscribers: list[Subscriber]) -> None:
        self.steps, self.subscribers = steps, subscribers

    async def stop(self) -> None:
        self.steps.done.append("broker")


class Relay:
    def __init__(self, steps: Steps, *, fails: bool = False) -> None:
        self.steps, self.fails = steps, fails

    async def stop(self, *, flush: bool) -> None:
        if self.fails:
            raise RuntimeError("flush failed")
        self.steps.done.append(f"relay flush={flush}")


class Mongo:
    def __init__(self, steps: Steps) -> None:
        self.steps = steps

    async def close(self) -> None:
        self.steps.done.append("mongo")


class Log:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append((event, fields))

    def info(self, event: str, **fields: Any) -> None:
        pass


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> Log:
    recorder = Log()
    monkeypatch.setattr(runtime, "log", recorder)
    return recorder


def service(steps: Steps, subscribers: list[Subscriber], *relays: Relay) -> ServiceRuntime:
    return ServiceRuntime(
        name="test",
        mongo=cast(Any, Mongo(steps)),
        broker=cast(Any, Broker(steps, subscribers)),
        kafka_bootstrap="127.0.0.1:1",
        topic_partitions=1,
        relays=cast(Any, list(relays) or [Relay(steps)]),
        shutdown_step_seconds=0.05,
    )


async def test_consumers_stop_then_the_outbox_is_flushed_then_everything_disconnects(
    log: Log,
) -> None:
    steps = Steps()
    subscribers = [Subscriber("news", steps), Subscriber("cases", steps)]
    await service(steps, subscribers).stop()
    assert sorted(steps.done[:2]) == ["cases", "news"]
    assert steps.done[2:] == ["relay flush=True", "broker", "mongo"]
    assert log.warnings == []


async def test_a_consumer_that_does_not_stop_in_time_is_cut_short_and_the_rest_goes_on(
    log: Log,
) -> None:
    steps = Steps()
    subscribers = [Subscriber("stuck", steps, hangs=True), Subscriber("cases", steps)]
    await service(steps, subscribers).stop()
    assert steps.done == ["cases", "relay flush=True", "broker", "mongo"]
    assert steps.cancelled == ["stuck"]
    [(event, fields)] = log.warnings
    assert event == "shutdown step cut short"
    assert fields["step"] == "stop consuming"
    assert fields["seconds"] == 0.05
    names = [frame.split(":")[0] for frame in fields["waiting_in"]]
    assert names[:3] == ["stop", "leave_group_during_a_rebalance", "join_group"]


async def test_a_stop_that_fails_still_fails_the_shutdown(log: Log) -> None:
    steps = Steps()
    with pytest.raises(RuntimeError, match="flush failed"):
        await service(steps, [Subscriber("news", steps)], Relay(steps, fails=True)).stop()
    assert steps.done == ["news"]
    assert log.warnings == []
