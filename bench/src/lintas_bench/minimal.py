"""Baseline (c): the pipeline's I/O steps per case with no framework, as one small script.

Per case, the same hops as Lintas, one store write per step and nothing else:
- "intake": insert the case document, then produce `case submitted` (the clock of a
  case starts after the insert, where Lintas answers 201);
- "referral" (consumer group on the cases topic): insert a routing document, produce
  `referral offered` (its time is taken as it is produced), commit the offset;
- "notify" (its own group on the cases topic): insert a message document, append a line
  to a file with fsync (as the file SMS provider does), produce `sms sent` (its time is
  taken as it is produced), commit the offset.
No HTTP, no validation, no encryption, no outbox, no idempotency records, no logging.
It runs as its own process (`python -m lintas_bench.minimal ...`) so that its CPU time is
its own, and prints one JSON object.

Modes: `open` sends `--rate` cases a second for `--seconds` (open loop, like the Lintas
steps); `closed` keeps `--concurrency` cases in the pipeline for `--seconds` (a worker
submits its next case once its last one was offered and texted) and counts the cases
completed: the script's throughput ceiling on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from lintas_shared.kafka import ensure_topics
from lintas_shared.kafka_auth import client_auth
from lintas_shared.mongo import Document, make_mongo_client
from pymongo.asynchronous.collection import AsyncCollection

from lintas_bench.stats import open_loop_schedule, summarise


@dataclass
class Tracker:
    """When each case was accepted, offered and "texted" (epoch seconds)."""

    accepted: dict[str, float] = field(default_factory=dict)
    offered: dict[str, float] = field(default_factory=dict)
    sms: dict[str, float] = field(default_factory=dict)
    waiters: dict[str, asyncio.Future[None]] = field(default_factory=dict)

    def complete(self, case_id: str) -> bool:
        """Both end points reached."""
        return case_id in self.offered and case_id in self.sms

    def reached(self, case_id: str) -> None:
        """An end point was reached: wake whoever waits for the case, once complete."""
        waiter = self.waiters.get(case_id)
        if waiter is not None and not waiter.done() and self.complete(case_id):
            waiter.set_result(None)


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write(line + "\n")
        out.flush()
        os.fsync(out.fileno())


class Minimal:
    """The three stages sharing one producer and one store client."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.prefix = f"bench.min.{uuid.uuid4().hex[:8]}"
        self.topics = {s: f"{self.prefix}.{s}" for s in ("cases", "referrals", "notifications")}
        self.payload = b"x" * args.payload_bytes
        self.tracker = Tracker()
        self.client = make_mongo_client(args.mongo, app_name="lintas-bench-minimal")
        db = self.client[args.database]
        self.cases: AsyncCollection[Document] = db["cases"]
        self.routings: AsyncCollection[Document] = db["routings"]
        self.messages: AsyncCollection[Document] = db["messages"]
        self.producer = AIOKafkaProducer(
            bootstrap_servers=args.bootstrap,
            **client_auth().client_options(),
            acks="all",
            enable_idempotence=True,
        )
        self.outbox = Path(args.outbox)
        self.file_lock = asyncio.Lock()
        self.ready = {"referral": asyncio.Event(), "notify": asyncio.Event()}

    async def submit(self, wait: bool = False) -> None:
        """The intake step for one new case; with `wait`, until it is complete."""
        case_id = uuid.uuid4().hex
        if wait:
            self.tracker.waiters[case_id] = asyncio.get_running_loop().create_future()
        await self.cases.insert_one({"_id": case_id, "data": self.payload, "status": "new"})
        self.tracker.accepted[case_id] = time.time()
        await self.producer.send_and_wait(self.topics["cases"], self.payload, key=case_id.encode())

    async def _stage(self, group: str, handle: Any) -> None:
        consumer = AIOKafkaConsumer(
            self.topics["cases"],
            bootstrap_servers=self.args.bootstrap,
            **client_auth().client_options(),
            group_id=f"{self.prefix}.{group}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            while not consumer.assignment():  # noqa: ASYNC110 (aiokafka has no event for it)
                await asyncio.sleep(0.05)
            self.ready[group].set()
            async for record in consumer:
                await handle(record.key.decode())
                await consumer.commit()
        finally:
            await consumer.stop()

    async def referral(self, case_id: str) -> None:
        """Route: one insert, one event."""
        await self.routings.insert_one({"_id": case_id, "partner": "hk", "data": self.payload})
        self.tracker.offered.setdefault(case_id, time.time())
        self.tracker.reached(case_id)
        await self.producer.send_and_wait(
            self.topics["referrals"], self.payload, key=case_id.encode()
        )

    async def notify(self, case_id: str) -> None:
        """Text: one insert, one line appended with fsync, one event."""
        await self.messages.insert_one({"_id": case_id, "template": "case_received"})
        line = json.dumps({"client_reference": case_id, "body": "Kasus diterima"})
        async with self.file_lock:
            await asyncio.to_thread(_append, self.outbox, line)
        self.tracker.sms.setdefault(case_id, time.time())
        self.tracker.reached(case_id)
        await self.producer.send_and_wait(self.topics["notifications"], b"{}", key=case_id.encode())

    async def run(self) -> dict[str, Any]:
        """Set up, drive the load, drain, and report."""
        await ensure_topics(
            self.args.bootstrap, list(self.topics.values()), partitions=self.args.partitions
        )
        await self.producer.start()
        stages = [
            asyncio.create_task(self._stage("referral", self.referral)),
            asyncio.create_task(self._stage("notify", self.notify)),
        ]
        try:
            # Both groups hold their partitions before the first case, so a slow group
            # join never counts as latency.
            await asyncio.wait_for(
                asyncio.gather(*(e.wait() for e in self.ready.values())), timeout=60.0
            )
            # What the script burns doing nothing (consumer polling), to report net CPU.
            idle_began, idle_cpu = time.monotonic(), _cpu()
            await asyncio.sleep(2.0)
            idle_rate = (_cpu() - idle_cpu) / (time.monotonic() - idle_began)
            cpu_before, cpu_began = _cpu(), time.monotonic()
            began = time.time()
            if self.args.mode == "open":
                await self._open_loop()
            else:
                await self._closed_loop()
            window = time.time() - began
            drain_until = time.monotonic() + self.args.drain
            while time.monotonic() < drain_until and not all(  # noqa: ASYNC110 (bounded poll)
                self.tracker.complete(c) for c in self.tracker.accepted
            ):
                await asyncio.sleep(0.1)
            cpu = _cpu() - cpu_before
            net_cpu = max(0.0, cpu - idle_rate * (time.monotonic() - cpu_began))
        finally:
            for task in stages:
                task.cancel()
            await asyncio.gather(*stages, return_exceptions=True)
            await self.producer.stop()
            await self.client.drop_database(self.args.database)
            await self.client.close()
        t = self.tracker
        accepted = list(t.accepted)
        completed_in_window = sum(
            1 for c in accepted if t.complete(c) and max(t.offered[c], t.sms[c]) <= began + window
        )
        return {
            "mode": self.args.mode,
            "rate": self.args.rate,
            "seconds": round(window, 2),
            "accepted": len(accepted),
            "completed": sum(1 for c in accepted if t.complete(c)),
            "completed_per_second_in_window": round(completed_in_window / window, 1),
            "offered": asdict(summarise([t.offered[c] - t.accepted[c] for c in t.offered])),
            "sms": asdict(summarise([t.sms[c] - t.accepted[c] for c in t.sms])),
            "cpu_seconds": round(cpu, 3),
            "cpu_ms_per_case_gross": round(1000.0 * cpu / len(accepted), 2) if accepted else None,
            "cpu_ms_per_case": round(1000.0 * net_cpu / len(accepted), 2) if accepted else None,
        }

    async def _open_loop(self) -> None:
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        began = loop.time()
        for offset in open_loop_schedule(self.args.rate, self.args.seconds):
            delay = began + offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.submit())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*list(tasks))

    async def _closed_loop(self) -> None:
        stop_at = time.monotonic() + self.args.seconds

        async def worker() -> None:
            while time.monotonic() < stop_at:
                # Bounded: a case that never completes must not hold the run forever.
                await asyncio.wait_for(self.submit(wait=True), timeout=60.0)

        await asyncio.gather(*(worker() for _ in range(self.args.concurrency)))


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    # Built inside the loop: aiokafka's clients bind to the running loop.
    return await Minimal(args).run()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    """Run once and print the JSON result."""
    p = argparse.ArgumentParser(prog="python -m lintas_bench.minimal", description=__doc__)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--mongo", required=True)
    p.add_argument("--database", default="lintas_bench_minimal")
    p.add_argument("--outbox", required=True)
    p.add_argument("--mode", choices=["open", "closed"], default="open")
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--drain", type=float, default=20.0)
    p.add_argument("--payload-bytes", type=int, default=2000)
    p.add_argument("--partitions", type=int, default=6)
    args = p.parse_args(argv)
    result = asyncio.run(_run(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
