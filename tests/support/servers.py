"""Real servers for the tests: a Kafka broker and a MongoDB-protocol server.

Found in this order:
1. `LINTAS_KAFKA_BOOTSTRAP` and `LINTAS_MONGODB_URI`, if both are set;
2. testcontainers (Apache Kafka 3.9.1, MongoDB 7), when a Docker engine answers;
3. the project's own launcher (deploy/): Kafka from Maven Central jars and FerretDB,
   on ports and in a data directory of their own, so `make test` works whether or not
   `make up` is running.

The tests log in to Kafka with SASL/SCRAM as the admin (`LINTAS_KAFKA_USERNAME` and
`LINTAS_KAFKA_PASSWORD`, the dev placeholders unless set) and apply the services' ACLs:
a broker from 1. must have those logins; the testcontainers broker of 2. has no SASL
listener, so the Kafka tests cannot pass on it as it is.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Servers:
    """Where the test servers listen, and who provided them."""

    kafka_bootstrap: str
    mongodb_uri: str
    origin: str


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:
        return False


@contextmanager
def _testcontainers() -> Iterator[Servers]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.mongodb import MongoDbContainer

    with (
        KafkaContainer("apache/kafka:3.9.1").with_kraft() as kafka,
        MongoDbContainer("mongo:7") as mongo,
    ):
        yield Servers(kafka.get_bootstrap_server(), mongo.get_connection_url(), "testcontainers")


@contextmanager
def _local_launcher(progress: Callable[[str], None]) -> Iterator[Servers]:
    from lintas_deploy.ferretdb import ferretdb_process, start_ferretdb
    from lintas_deploy.kafka import kafka_process, start_kafka

    state = Path(os.environ.get("LINTAS_TEST_STATE_DIR", REPO_ROOT / ".lintas" / "test-servers"))
    cache = Path(os.environ.get("LINTAS_CACHE_DIR", REPO_ROOT / ".lintas" / "cache"))
    kafka_port = int(os.environ.get("LINTAS_TEST_KAFKA_PORT", "19092"))
    controller_port = int(os.environ.get("LINTAS_TEST_KAFKA_CONTROLLER_PORT", "19093"))
    mongo_port = int(os.environ.get("LINTAS_TEST_MONGO_PORT", "27018"))
    # A fresh broker and store each session: tests never see a previous run's records.
    for process in (kafka_process(state), ferretdb_process(state)):
        process.stop()
    for data in (state / "kafka", state / "ferretdb"):
        shutil.rmtree(data, ignore_errors=True)
    progress(
        f"starting test Kafka on 127.0.0.1:{kafka_port} and FerretDB on "
        f"127.0.0.1:{mongo_port} (state in {state})"
    )
    kafka = start_kafka(
        state, cache, port=kafka_port, controller_port=controller_port, partitions=3
    )
    ferret = start_ferretdb(state, cache, port=mongo_port)
    try:
        yield Servers(
            f"127.0.0.1:{kafka_port}", f"mongodb://127.0.0.1:{mongo_port}/", "local launcher"
        )
    finally:
        ferret.stop()
        kafka.stop()


@contextmanager
def provide_servers(progress: Callable[[str], None]) -> Iterator[Servers]:
    """The test servers for one pytest session, stopped afterwards if we started them."""
    kafka = os.environ.get("LINTAS_KAFKA_BOOTSTRAP")
    mongo = os.environ.get("LINTAS_MONGODB_URI")
    if kafka and mongo:
        yield Servers(kafka, mongo, "environment")
    elif _docker_answers():
        with _testcontainers() as servers:
            yield servers
    else:
        with _local_launcher(progress) as servers:
            yield servers
