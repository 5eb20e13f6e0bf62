"""`make faults`, reduced: the whole pipeline under kills, restarts, a rewind and poison.

Its own Kafka, FerretDB and two instances of each service on ports 25100-25115 (not the
e2e stack's), a fixed seed, 30 cases, one SIGKILL per service process. The big poison is
900 kB here, under the services' producer limit; the 2 MB one is the test after it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from lintas_faults.cli import Options, run
from lintas_faults.kafka_ops import inject_poison, read_all
from lintas_faults.stack import FaultStack, Ports
from lintas_shared.topics import CASES, dead_letter_topic

from tests.support.servers import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]


def test_nothing_lost_or_doubled_under_faults(tmp_path: Path) -> None:
    table = run(
        Options(
            cases=30,
            seed=6,
            kills=1,
            concurrency=4,
            rate=0.3,
            base_port=25100,
            big_poison_bytes=900_000,
            settle_seconds=300,
            quiet_seconds=5,
            per_case_seconds=240,
            out_dir=tmp_path,
            cache_dir=REPO_ROOT / ".lintas" / "cache",
        )
    )
    print(table.render())
    assert table.acknowledged == 30, table.examples
    assert table.lost_total == 0, table.examples
    assert table.duplicates_total == 0, table.examples
    assert table.dlq_matching_poison == table.dlq_expected, table.examples
    assert table.dlq_unexpected == 0, table.examples
    assert table.passed, table.chaos


@pytest.mark.xfail(
    strict=True,
    reason="bug: a record over the services' producer max_request_size (1,064,000 bytes, "
    "lintas_shared.kafka.make_broker) cannot be parked; EventConsumer._park raises "
    "MessageSizeTooLargeError, NACK_ON_ERROR seeks back and the partition is redelivered "
    "in a loop for every consumer group of the topic",
)
def test_a_two_megabyte_record_is_dead_lettered(tmp_path: Path) -> None:
    stack = FaultStack(
        tmp_path / "state",
        REPO_ROOT / ".lintas" / "cache",
        Ports(25120),
        instances_per_service=1,
        progress=lambda _: None,
    )
    try:
        stack.start()
        asyncio.run(inject_poison(stack.bootstrap, CASES, 2_000_000, "big"))
        deadline = time.monotonic() + 60
        parked: set[str] = set()
        while time.monotonic() < deadline and len(parked) < 2:
            dlq = asyncio.run(read_all(stack.bootstrap, dead_letter_topic(CASES)))
            parked = {
                r.headers.get("lintas_dlq_consumer", "")
                for r in dlq
                if r.headers.get("lintas_faults_poison", "").endswith("big_body")
            }
            time.sleep(2)
        assert parked == {"notify", "referral"}
    finally:
        stack.stop()
