"""Baselines on the same servers: raw Kafka, raw store, the no-framework pipeline, the
broker's own limit.

(a) `kafka_roundtrip`: one record at a time, produced (acks=all, idempotent, as the
    services produce) and consumed back, with and without the offset commit that every
    Lintas subscriber makes per record.
(b) `store_ops`: the store commands one case costs in Lintas (counted, see storeops),
    replayed raw with PyMongo by `_id`, one case after another.
(c) `minimal_pipeline`: `lintas_bench.minimal` in its own process.
Broker limit: `aiokafka_max_produce` and Kafka's own `ProducerPerformance` tool.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from lintas_deploy.kafka import properties_text
from lintas_shared.kafka import ensure_topics
from lintas_shared.kafka_auth import client_auth
from lintas_shared.mongo import make_mongo_client

from lintas_bench.children import finish, spawn
from lintas_bench.observe import RecordShape
from lintas_bench.stats import summarise

KAFKA_TOOLS_ARTIFACT = "org.apache.kafka:kafka-tools:3.9.1"


def _headers(shape: RecordShape) -> list[tuple[str, bytes]]:
    """Headers of the same count and total size as a real event's (dummy values)."""
    count = max(shape.header_count, 1)
    each = max(shape.header_bytes // count - 6, 1)
    return [(f"ce_h{i:02d}", b"h" * each) for i in range(count)]


async def kafka_roundtrip(bootstrap: str, shape: RecordShape, count: int) -> dict[str, Any]:
    """Sequential produce -> consume round trips of records shaped like `case submitted`."""
    topic = f"bench.rtt.{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [topic], partitions=1)
    value = b"v" * max(shape.value_bytes, 1)
    headers = _headers(shape)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        **client_auth().client_options(),
        acks="all",
        enable_idempotence=True,
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        **client_auth().client_options(),
        group_id=f"{topic}.group",
        enable_auto_commit=False,
    )
    await producer.start()
    await consumer.start()
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    await consumer.seek_to_end(partition)
    produced: list[float] = []
    consumed: list[float] = []
    committed: list[float] = []
    try:
        for i in range(count + 5):
            began = time.perf_counter()
            await producer.send_and_wait(topic, value, key=str(i).encode(), headers=headers)
            acked = time.perf_counter()
            await consumer.getone()
            got = time.perf_counter()
            await consumer.commit()
            done = time.perf_counter()
            if i >= 5:  # the first few pay for connections and metadata
                produced.append(acked - began)
                consumed.append(got - began)
                committed.append(done - began)
    finally:
        await consumer.stop()
        await producer.stop()
    return {
        "records": count,
        "value_bytes": len(value),
        "header_bytes": sum(len(k) + len(v) for k, v in headers),
        "produce_ack": asdict(summarise(produced)),
        "produce_to_consume": asdict(summarise(consumed)),
        "produce_to_consume_and_commit": asdict(summarise(committed)),
    }


def _spread(per_case: float, cases: int) -> list[int]:
    """Whole operations per case whose total over `cases` matches the average."""
    return [int((i + 1) * per_case) - int(i * per_case) for i in range(cases)]


async def store_ops(uri: str, mix: dict[str, float], cases: int, doc_bytes: int) -> dict[str, Any]:
    """Replay the per-case command mix raw, by `_id`, one case after another."""
    client = make_mongo_client(uri, app_name="lintas-bench-store")
    database = f"lintas_bench_store_{uuid.uuid4().hex[:8]}"
    collection = client[database]["docs"]
    payload = "d" * max(doc_bytes, 1)
    plan = {name: _spread(mix.get(name, 0.0), cases) for name in _REPLAYED}
    timings: dict[str, list[float]] = {name: [] for name in _REPLAYED}
    per_case: list[float] = []
    try:
        await collection.insert_one({"_id": "warm-up", "data": payload})
        for i in range(cases):
            began = time.perf_counter()
            ids: list[str] = []
            for n in range(max(plan["insert"][i], 1 if any(p[i] for p in plan.values()) else 0)):
                doc_id = f"c{i}-{n}"
                ids.append(doc_id)
                t = time.perf_counter()
                await collection.insert_one(
                    {"_id": doc_id, "data": payload, "version": 1, "outbox": []}
                )
                timings["insert"].append(time.perf_counter() - t)
            target = ids[0] if ids else "warm-up"
            for _ in range(plan["find"][i]):
                t = time.perf_counter()
                await collection.find_one({"_id": target})
                timings["find"].append(time.perf_counter() - t)
            for n in range(plan["update"][i]):
                t = time.perf_counter()
                await collection.update_one(
                    {"_id": target},
                    {"$set": {"version": n + 2}, "$push": {"outbox": {"id": n, "e": "x" * 200}}},
                )
                timings["update"].append(time.perf_counter() - t)
            for n in range(plan["findAndModify"][i]):
                t = time.perf_counter()
                await collection.find_one_and_update({"_id": target}, {"$set": {"status": n}})
                timings["findAndModify"].append(time.perf_counter() - t)
            for _ in range(plan["count"][i]):
                t = time.perf_counter()
                await collection.count_documents({"_id": target})
                timings["count"].append(time.perf_counter() - t)
            for _ in range(plan["delete"][i]):
                t = time.perf_counter()
                await collection.delete_one({"_id": ids.pop() if len(ids) > 1 else f"none-{i}"})
                timings["delete"].append(time.perf_counter() - t)
            per_case.append(time.perf_counter() - began)
    finally:
        await client.drop_database(database)
        await client.close()
    total = sum(per_case)
    return {
        "cases": cases,
        "doc_bytes": doc_bytes,
        "commands_per_case": {k: round(len(v) / cases, 2) for k, v in timings.items() if v},
        "not_replayed": {k: v for k, v in mix.items() if k not in _REPLAYED},
        "per_case": asdict(summarise(per_case)),
        "cases_per_second_one_at_a_time": round(cases / total, 1) if total else None,
        "per_command": {k: asdict(summarise(v)) for k, v in timings.items() if v},
    }


#: Commands replayed by `store_ops` (others are listed as not replayed).
_REPLAYED = ("insert", "find", "update", "findAndModify", "count", "delete")


async def aiokafka_max_produce(
    bootstrap: str, shape: RecordShape, records: int, max_seconds: float = 20.0
) -> dict[str, Any]:
    """Records per second one aiokafka producer gets acknowledged (acks=all, batched)."""
    topic = f"bench.max.{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [topic], partitions=1)
    value = b"v" * max(shape.value_bytes, 1)
    headers = _headers(shape)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        **client_auth().client_options(),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
    )
    await producer.start()
    sent = 0
    began = time.perf_counter()
    try:
        while sent < records and time.perf_counter() - began < max_seconds:
            batch = [
                await producer.send(topic, value, key=str(sent + i).encode(), headers=headers)
                for i in range(min(1000, records - sent))
            ]
            await asyncio.gather(*batch)
            sent += len(batch)
    finally:
        await producer.stop()
    elapsed = time.perf_counter() - began
    return {
        "records": sent,
        "seconds": round(elapsed, 2),
        "records_per_second": round(sent / elapsed, 1),
        "mb_per_second": round(sent * len(value) / elapsed / 1e6, 2),
    }


def provision_kafka_tools(cache_dir: Path) -> Path | None:
    """Kafka's tools jar (ProducerPerformance) from Maven Central, cached; None if mvn
    is missing or fails (the aiokafka figure stands alone then)."""
    target = cache_dir / "kafka-tools"
    jar = target / "kafka-tools-3.9.1.jar"
    if jar.is_file():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        return None
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "dependency:copy",
            f"-Dartifact={KAFKA_TOOLS_ARTIFACT}",
            f"-DoutputDirectory={target}",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return target if result.returncode == 0 and jar.is_file() else None


_PERF_LINE = re.compile(
    r"(?P<records>\d+) records sent, (?P<rps>[\d.]+) records/sec \((?P<mbps>[\d.]+) MB/sec\), "
    r"(?P<avg>[\d.]+) ms avg latency, (?P<max>[\d.]+) ms max latency"
    r"(?:, (?P<p50>\d+) ms 50th, (?P<p95>\d+) ms 95th, (?P<p99>\d+) ms 99th)?"
)


def parse_producer_performance(output: str) -> dict[str, float] | None:
    """The final summary line of ProducerPerformance (the one with percentiles)."""
    found = None
    for match in _PERF_LINE.finditer(output):
        found = match
    if found is None:
        return None
    return {k: float(v) for k, v in found.groupdict().items() if v is not None}


async def producer_performance(
    bootstrap: str, tools_dir: Path, jars_dir: Path, record_bytes: int, records: int
) -> dict[str, Any]:
    """Kafka's own ProducerPerformance (acks=all, unthrottled) against the broker."""
    topic = f"bench.perf.{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [topic], partitions=1)
    java = shutil.which("java")
    if java is None:
        return {"skipped": "java not found"}
    argv = [
        java,
        "-Xmx256m",
        "-cp",
        f"{tools_dir}/*:{jars_dir}/*",
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--record-size",
        str(record_bytes),
        "--throughput",
        "-1",
        "--producer-props",
        f"bootstrap.servers={bootstrap}",
        "acks=all",
    ]
    # The broker wants a SASL login, as from every client; in a file readable by this
    # user only, so the password is not on a command line.
    with tempfile.TemporaryDirectory(prefix="lintas-bench-") as private:
        config = Path(private) / "producer.properties"
        config.touch(mode=0o600)
        config.write_text(properties_text(client_auth().java_client_properties().items()))
        argv += ["--producer.config", str(config)]
        process = await spawn(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        output = await finish(process, 180.0)
    if output is None:
        return {"skipped": "ProducerPerformance did not finish within 180 s"}
    parsed = parse_producer_performance(output[0].decode(errors="replace"))
    if parsed is None:
        return {"skipped": f"no summary from ProducerPerformance (exit {process.returncode})"}
    return {
        "tool": "org.apache.kafka.tools.ProducerPerformance",
        "record_bytes": record_bytes,
        "records": int(parsed["records"]),
        "records_per_second": parsed["rps"],
        "mb_per_second": parsed["mbps"],
        "avg_latency_ms": parsed["avg"],
        "p99_latency_ms": parsed.get("p99"),
    }


async def minimal_pipeline(
    *,
    bootstrap: str,
    mongo: str,
    outbox: Path,
    mode: str,
    rate: float,
    seconds: float,
    payload_bytes: int,
    partitions: int,
    concurrency: int = 16,
) -> dict[str, Any]:
    """Run baseline (c) in its own process and return its JSON result."""
    process = await spawn(
        sys.executable,
        "-m",
        "lintas_bench.minimal",
        "--bootstrap",
        bootstrap,
        "--mongo",
        mongo,
        "--outbox",
        str(outbox),
        "--mode",
        mode,
        "--rate",
        f"{rate:g}",
        "--seconds",
        f"{seconds:g}",
        "--concurrency",
        str(concurrency),
        "--payload-bytes",
        str(payload_bytes),
        "--partitions",
        str(partitions),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    output = await finish(process, seconds + 120.0)
    if output is None:
        return {"skipped": "the minimal pipeline did not finish in time"}
    stdout, stderr = output
    lines = [line for line in stdout.decode().splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        tail = stderr.decode(errors="replace").strip().splitlines()[-5:]
        return {"skipped": f"exit {process.returncode}: {' | '.join(tail)}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result
