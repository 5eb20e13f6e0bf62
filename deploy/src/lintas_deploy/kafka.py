"""Apache Kafka 3.9.1 in KRaft mode (one combined broker+controller) from Maven Central jars.

``provision_kafka`` copies the runtime jars named by ``deploy/kafka/pom.xml`` into the
cache with ``mvn dependency:copy-dependencies``; ``start_kafka`` writes the broker
config, formats the storage once and runs ``java ... kafka.Kafka server.properties``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from lintas_deploy import deploy_file
from lintas_deploy.processes import (
    ManagedProcess,
    ensure_ports_free,
    file_lock,
    wait_for_log_line,
    wait_for_port,
)

__all__ = [
    "KAFKA_VERSION",
    "kafka_address",
    "kafka_process",
    "provision_kafka",
    "start_kafka",
]

KAFKA_VERSION = "3.9.1"

HOST = "127.0.0.1"

# Logged by KafkaRaftServer.startup() once broker and controller are both up.
STARTED_MESSAGE = "Kafka Server started"

# slf4j 1.7 bindings: exactly one may be on the classpath (slf4j-reload4j).
_SLF4J_BINDINGS = (
    "slf4j-reload4j",
    "slf4j-log4j12",
    "slf4j-simple",
    "slf4j-jdk14",
    "slf4j-nop",
    "logback-classic",
    "log4j-slf4j-impl",
    "log4j-slf4j2-impl",
)

_LOG4J_PROPERTIES = """\
# Written by lintas_deploy: everything goes to stdout, which is the kafka log file.
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.network.RequestChannel$=WARN
log4j.logger.kafka.controller=INFO
log4j.logger.kafka.log.LogCleaner=INFO
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.authorizer.logger=WARN
"""


def _hash_files(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _find_tool(name: str, *fallbacks: Path) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in fallbacks:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise RuntimeError(f"`{name}` not found on PATH; install it first")


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    fallbacks = [Path(java_home) / "bin" / "java"] if java_home else []
    return _find_tool("java", *fallbacks)


def _check_jars(jars_dir: Path) -> None:
    names = sorted(p.name for p in jars_dir.glob("*.jar"))
    if f"kafka_2.13-{KAFKA_VERSION}.jar" not in names:
        raise RuntimeError(f"kafka_2.13-{KAFKA_VERSION}.jar missing from {jars_dir}")
    bindings = [n for n in names if n.startswith(_SLF4J_BINDINGS)]
    if len(bindings) != 1:
        raise RuntimeError(
            f"expected exactly one slf4j binding in {jars_dir}, found {bindings or 'none'}; "
            "fix the exclusions in deploy/kafka/pom.xml"
        )


def provision_kafka(cache_dir: Path, progress: Callable[[str], None] = print) -> Path:
    """Fetch the Kafka runtime jars into ``cache_dir/kafka/jars`` and return that directory.

    Runs ``mvn dependency:copy-dependencies`` on ``deploy/kafka/pom.xml`` only when the
    stamp file (a hash of pom.xml) is missing or different. Uses mvn's default settings
    and local repository (~/.m2).
    """
    pom = deploy_file("kafka", "pom.xml")
    base = Path(cache_dir).resolve() / "kafka"
    jars_dir = base / "jars"
    stamp_file = base / "jars.stamp"
    wanted = _hash_files(pom)
    with file_lock(base / ".provision.lock"):
        if jars_dir.is_dir() and _read(stamp_file) == wanted:
            progress(f"kafka: jars up to date in {jars_dir}")
            return jars_dir
        mvn = _find_tool("mvn")
        tmp_dir = base / f"jars.tmp-{os.getpid()}"
        shutil.rmtree(tmp_dir, ignore_errors=True)
        progress(
            f"kafka: fetching Apache Kafka {KAFKA_VERSION} jars with mvn into {jars_dir} "
            "(a cold ~/.m2 downloads ~40 MB)..."
        )
        began = time.monotonic()
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={tmp_dir}",
            ],
            cwd=pom.parent,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            output = (result.stdout + result.stderr).strip().splitlines()
            raise RuntimeError(
                f"mvn failed (exit {result.returncode}):\n" + "\n".join(output[-40:])
            )
        _check_jars(tmp_dir)
        old_dir = base / f"jars.old-{os.getpid()}"
        if jars_dir.exists():
            jars_dir.rename(old_dir)
        tmp_dir.rename(jars_dir)
        shutil.rmtree(old_dir, ignore_errors=True)
        stamp_file.write_text(wanted + "\n")
        count = len(list(jars_dir.glob("*.jar")))
        progress(f"kafka: {count} jars ready in {jars_dir} ({time.monotonic() - began:.1f}s)")
        return jars_dir


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


def _prop_value(value: str) -> str:
    """Escape a value for a Java .properties file."""
    out = value.replace("\\", "\\\\").replace("\n", "\\n")
    if out.startswith(" "):
        out = "\\" + out
    return "".join(c if c.isascii() else f"\\u{ord(c):04x}" for c in out)


def _server_properties(data_dir: Path, port: int, controller_port: int, partitions: int) -> str:
    props: list[tuple[str, str | int]] = [
        ("process.roles", "broker,controller"),
        ("node.id", 1),
        ("controller.quorum.voters", f"1@{HOST}:{controller_port}"),
        ("listeners", f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}"),
        ("advertised.listeners", f"PLAINTEXT://{HOST}:{port}"),
        ("controller.listener.names", "CONTROLLER"),
        ("inter.broker.listener.name", "PLAINTEXT"),
        ("listener.security.protocol.map", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"),
        ("log.dirs", str(data_dir)),
        ("num.partitions", partitions),
        ("default.replication.factor", 1),
        ("offsets.topic.replication.factor", 1),
        # Fewer internal partitions than the defaults (50) keep the first start fast.
        ("offsets.topic.num.partitions", 6),
        ("transaction.state.log.num.partitions", 6),
        ("transaction.state.log.replication.factor", 1),
        ("transaction.state.log.min.isr", 1),
        ("min.insync.replicas", 1),
        ("group.initial.rebalance.delay.ms", 0),
        ("auto.create.topics.enable", "false"),
        ("num.network.threads", 2),
        ("num.io.threads", 4),
        ("num.recovery.threads.per.data.dir", 1),
        ("log.retention.hours", 168),
    ]
    lines = ["# Written by lintas_deploy.kafka.start_kafka; rewritten on every start."]
    lines += [f"{key}={_prop_value(str(value))}" for key, value in props]
    return "\n".join(lines) + "\n"


def kafka_process(state_dir: Path) -> ManagedProcess:
    """Return the ManagedProcess handle of the Kafka broker under ``state_dir``."""
    return ManagedProcess("kafka", Path(state_dir).resolve())


def kafka_address(state_dir: Path) -> str | None:
    """Return ``host:port`` of the PLAINTEXT listener last configured in ``state_dir``."""
    props = _read(Path(state_dir).resolve() / "kafka" / "server.properties")
    for line in (props or "").splitlines():
        if line.startswith("advertised.listeners="):
            return line.split("=", 1)[1].removeprefix("PLAINTEXT://")
    return None


def _storage_tool(java: str, jars_dir: Path, log4j: Path, *args: str) -> str:
    result = subprocess.run(
        [
            java,
            "-Xmx256m",
            f"-Dlog4j.configuration={log4j.as_uri()}",
            "-cp",
            f"{jars_dir}/*",
            "kafka.tools.StorageTool",
            *args,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"kafka.tools.StorageTool {args[0]} failed (exit {result.returncode}):\n"
            + (result.stdout + result.stderr).strip()
        )
    return result.stdout


def _cluster_id(kafka_dir: Path, data_dir: Path, run_tool: Callable[..., str]) -> str:
    """Return the cluster id: remembered, else from formatted data, else a new one."""
    id_file = kafka_dir / "cluster.id"
    remembered = _read(id_file)
    if remembered:
        return remembered
    meta = _read(data_dir / "meta.properties") or ""
    for line in meta.splitlines():
        if line.startswith("cluster.id="):
            cluster_id = line.split("=", 1)[1].strip()
            break
    else:
        cluster_id = run_tool("random-uuid").strip().splitlines()[-1].strip()
    id_file.write_text(cluster_id + "\n")
    return cluster_id


def start_kafka(
    state_dir: Path,
    cache_dir: Path,
    port: int = 9092,
    controller_port: int = 9093,
    partitions: int = 6,
    heap: str = "512m",
    timeout: float = 120.0,
    progress: Callable[[str], None] = print,
) -> ManagedProcess:
    """Start the Kafka broker (KRaft, broker+controller) on 127.0.0.1 and wait until ready.

    Idempotent: if the broker under ``state_dir`` already runs, it is returned as is.
    Provisions the jars if needed, writes ``state_dir/kafka/server.properties`` and
    ``log4j.properties``, formats ``state_dir/kafka/data`` once (the cluster id is kept
    in ``state_dir/kafka/cluster.id`` so restarts reuse it), starts
    ``java ... kafka.Kafka server.properties`` and waits until the port answers and the
    log says "Kafka Server started". On failure the process is stopped and RuntimeError
    carries the log tail; PortInUseError if a port is taken by a process we did not start.
    """
    state_dir = Path(state_dir).resolve()
    proc = kafka_process(state_dir)
    kafka_dir = state_dir / "kafka"
    with file_lock(state_dir / "run" / "kafka.lock"):
        if proc.is_running():
            return proc
        if port == controller_port:
            raise ValueError("Kafka port and controller port must differ")
        ensure_ports_free(
            {"kafka port": port, "kafka controller port": controller_port},
            hint=" (--kafka-port, --kafka-controller-port or LINTAS_KAFKA_PORT, "
            "LINTAS_KAFKA_CONTROLLER_PORT)",
        )
        jars_dir = provision_kafka(cache_dir, progress)
        java = _java()

        data_dir = kafka_dir / "data"
        if "," in str(data_dir):
            raise RuntimeError(f"the state dir must not contain ',' (log.dirs): {state_dir}")
        data_dir.mkdir(parents=True, exist_ok=True)
        server_props = kafka_dir / "server.properties"
        server_props.write_text(_server_properties(data_dir, port, controller_port, partitions))
        log4j = kafka_dir / "log4j.properties"
        log4j.write_text(_LOG4J_PROPERTIES)

        def run_tool(*args: str) -> str:
            return _storage_tool(java, jars_dir, log4j, *args)

        cluster_id = _cluster_id(kafka_dir, data_dir, run_tool)
        if not (data_dir / "meta.properties").exists():
            progress(f"kafka: formatting {data_dir} (cluster id {cluster_id})")
            run_tool("format", "-t", cluster_id, "-c", str(server_props), "--ignore-formatted")

        argv = [
            java,
            f"-Xmx{heap}",
            f"-Xms{heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration={log4j.as_uri()}",
            "-cp",
            f"{jars_dir}/*",
            "kafka.Kafka",
            str(server_props),
        ]
        offset = proc.log_size()
        progress(f"kafka: starting broker on {HOST}:{port} (controller {HOST}:{controller_port})")
        proc.start(argv, cwd=kafka_dir)
        began = time.monotonic()
        try:
            wait_for_port(HOST, port, timeout, proc)
            remaining = max(1.0, timeout - (time.monotonic() - began))
            wait_for_log_line(proc, STARTED_MESSAGE, remaining, offset)
        except BaseException:
            proc.stop(timeout=10.0)
            raise
        return proc
