"""The chaos schedule: a seeded plan of faults, run one after another during the load.

Each action waits until the driver has finished a given share of the cases (drawn from
the seed), then a seeded jitter, then happens. So the same seed gives the same faults in
the same order at the same points of progress; only wall-clock timing differs.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lintas_shared.topics import CASES, SOURCE_TOPICS

from lintas_faults.driver import Progress
from lintas_faults.kafka_ops import Poison, inject_poison, rewind_group
from lintas_faults.stack import GROUPS, FaultStack


@dataclass(frozen=True)
class Action:
    """One fault: what, against what, and when (share of cases finished)."""

    at: float
    kind: str  # kill | restart_kafka | restart_ferretdb | rewind | poison
    target: str
    jitter: float
    pause: float = 0.0  # kill: seconds down before the restart

    def describe(self) -> str:
        extra = f", down {self.pause:.1f}s" if self.kind == "kill" else ""
        return f"at {self.at:4.0%} +{self.jitter:.1f}s: {self.kind} {self.target}{extra}"


def plan(seed: int, instance_names: list[str], kills_per_process: int) -> list[Action]:
    """The whole schedule for `seed`, in the order it will run."""
    rng = random.Random(seed)
    actions = []
    for name in instance_names:
        for _ in range(kills_per_process):
            at, jitter, pause = rng.uniform(0.02, 0.98), rng.uniform(0, 1.5), rng.uniform(0.2, 3)
            actions.append(Action(at, "kill", name, jitter, pause))
    actions.append(Action(rng.uniform(0.2, 0.8), "restart_kafka", "kafka", rng.uniform(0, 1.5)))
    actions.append(
        Action(rng.uniform(0.2, 0.8), "restart_ferretdb", "ferretdb", rng.uniform(0, 1.5))
    )
    group = rng.choice(["referral", "notify"])
    actions.append(Action(rng.uniform(0.3, 0.9), "rewind", group, rng.uniform(0, 1.5)))
    for topic in SOURCE_TOPICS:
        actions.append(Action(rng.uniform(0.05, 0.95), "poison", topic, rng.uniform(0, 1.5)))
    return sorted(actions, key=lambda a: a.at)


@dataclass
class ChaosLog:
    """What the chaos schedule did."""

    done: list[str] = field(default_factory=list)
    poison: list[Poison] = field(default_factory=list)
    redelivered: int = 0
    errors: list[str] = field(default_factory=list)


def lane(action: Action) -> str:
    """Actions on one service run in order in its lane; broker, store and poison in another."""
    if action.kind == "kill":
        return action.target.rsplit("-", 1)[0]
    if action.kind == "rewind":
        return action.target
    return "infrastructure"


async def run_chaos(
    stack: FaultStack,
    actions: list[Action],
    progress: Progress,
    *,
    big_poison_bytes: int,
    tag: str,
    wait_seconds: float,
    say: Callable[[str], None] = print,
) -> ChaosLog:
    """Run `actions`: one lane per service and one for the servers, side by side.

    Within a lane the actions run in plan order, each after its share of the load (or
    `wait_seconds`, whichever comes first), so at most one instance of a service is
    down at a time except during its group's rewind.
    """
    log = ChaosLog()
    began = time.monotonic()
    lanes: dict[str, list[Action]] = {}
    for action in actions:
        lanes.setdefault(lane(action), []).append(action)

    async def run_lane(todo: list[Action]) -> None:
        for action in todo:
            deadline = time.monotonic() + wait_seconds
            await progress.reached(action.at, deadline)
            await asyncio.sleep(action.jitter)
            stamp = f"[{time.monotonic() - began:6.1f}s, {progress.finished}/{progress.total}]"
            say(f"chaos {stamp} {action.describe()}")
            try:
                await _apply(stack, action, log, big_poison_bytes, tag)
            except Exception as exc:  # recorded, reported, and the run fails on it
                log.errors.append(f"{action.describe()}: {type(exc).__name__}: {exc}")
                say(f"chaos: {action.kind} {action.target} failed: {exc}")
            log.done.append(action.describe())

    await asyncio.gather(*(run_lane(todo) for todo in lanes.values()))
    return log


async def _apply(
    stack: FaultStack,
    action: Action,
    log: ChaosLog,
    big_poison_bytes: int,
    tag: str,
) -> None:
    if action.kind == "kill":
        instance = next(i for i in stack.instances if i.name == action.target)
        await asyncio.to_thread(stack.sigkill, instance)
        await asyncio.sleep(action.pause)
        await asyncio.to_thread(stack.restart, instance)
    elif action.kind == "restart_kafka":
        await asyncio.to_thread(stack.restart_kafka)
    elif action.kind == "restart_ferretdb":
        await asyncio.to_thread(stack.restart_ferretdb)
    elif action.kind == "rewind":
        members = stack.of(action.target)
        for member in members:
            await asyncio.to_thread(stack.terminate, member)
        log.redelivered += await rewind_group(stack.bootstrap, GROUPS[action.target], CASES)
        for member in members:
            await asyncio.to_thread(stack.restart, member)
    elif action.kind == "poison":
        log.poison += await inject_poison(stack.bootstrap, action.target, big_poison_bytes, tag)
    else:
        raise ValueError(action.kind)
