"""Apache Kafka 3.9.1 in KRaft mode (one combined broker+controller) from Maven Central jars.

``provision_kafka`` copies the runtime jars named by ``deploy/kafka/pom.xml`` into the
cache with ``mvn dependency:copy-dependencies``; ``start_kafka`` writes the broker
config, formats the storage once and runs ``java ... kafka.Kafka server.properties``.

Clients authenticate with SASL/SCRAM-SHA-512 on the only client listener, and the
StandardAuthorizer denies whatever no ACL allows. The SCRAM users (``ADMIN_USER``, a
super user, and one per service) are written into the storage when it is formatted;
the ACLs are applied afterwards by whoever starts the broker for the stack
(``lintas_shared.kafka_access``), as the admin.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
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
    "ADMIN_USER",
    "DEV_PASSWORD",
    "KAFKA_VERSION",
    "SCRAM_MECHANISM",
    "SERVICE_USERS",
    "dev_users",
    "kafka_address",
    "kafka_process",
    "properties_text",
    "provision_kafka",
    "start_kafka",
]

KAFKA_VERSION = "3.9.1"

HOST = "127.0.0.1"

#: The broker's own principal, and the super user that provisioning and tools log in as.
ADMIN_USER = "admin"
#: One SCRAM user per service; their ACLs are in ``lintas_shared.kafka_access``.
SERVICE_USERS = ("intake", "referral", "notify")
#: Every principal's password on a dev or test broker: a published placeholder, so it
#: separates the services from each other's mistakes, not from someone on the machine.
DEV_PASSWORD = "dev-only-kafka-password"  # noqa: S105  (a published placeholder)
SCRAM_MECHANISM = "SCRAM-SHA-512"
# The listener clients use; the name is also its security protocol.
CLIENT_LISTENER = "SASL_PLAINTEXT"

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


def properties_text(props: Iterable[tuple[str, str | int]]) -> str:
    """`key=value` lines of a Java .properties file, each value escaped."""
    return "".join(f"{key}={_prop_value(str(value))}\n" for key, value in props)


def _prop_value(value: str) -> str:
    """Escape a value for a Java .properties file."""
    out = value.replace("\\", "\\\\").replace("\n", "\\n")
    if out.startswith(" "):
        out = "\\" + out
    return "".join(c if c.isascii() else f"\\u{ord(c):04x}" for c in out)


def dev_users() -> dict[str, str]:
    """The SCRAM users of a dev or test broker: the admin and each service, with the
    placeholder password."""
    return {name: DEV_PASSWORD for name in (ADMIN_USER, *SERVICE_USERS)}


def _jaas_quote(value: str) -> str:
    if '"' in value or "\\" in value:
        raise ValueError("a Kafka password must not contain a double quote or a backslash")
    return f'"{value}"'


def _server_properties(
    data_dir: Path, port: int, controller_port: int, partitions: int, admin_password: str
) -> str:
    admin = f"username={_jaas_quote(ADMIN_USER)} password={_jaas_quote(admin_password)}"
    props: list[tuple[str, str | int]] = [
        ("process.roles", "broker,controller"),
        ("node.id", 1),
        ("controller.quorum.voters", f"1@{HOST}:{controller_port}"),
        (
            "listeners",
            f"{CLIENT_LISTENER}://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        ),
        ("advertised.listeners", f"{CLIENT_LISTENER}://{HOST}:{port}"),
        ("controller.listener.names", "CONTROLLER"),
        ("inter.broker.listener.name", CLIENT_LISTENER),
        (
            "listener.security.protocol.map",
            f"CONTROLLER:SASL_PLAINTEXT,{CLIENT_LISTENER}:SASL_PLAINTEXT",
        ),
        # Clients: SCRAM, whose users live in the cluster metadata (formatted in).
        ("sasl.enabled.mechanisms", SCRAM_MECHANISM),
        (f"listener.name.{CLIENT_LISTENER.lower()}.sasl.enabled.mechanisms", SCRAM_MECHANISM),
        ("sasl.mechanism.inter.broker.protocol", SCRAM_MECHANISM),
        (
            f"listener.name.{CLIENT_LISTENER.lower()}.{SCRAM_MECHANISM.lower()}.sasl.jaas.config",
            f"org.apache.kafka.common.security.scram.ScramLoginModule required {admin};",
        ),
        # The controller listener cannot use SCRAM (the metadata is not there yet when
        # the quorum forms): PLAIN with the admin alone, so that port is no back door.
        ("listener.name.controller.sasl.enabled.mechanisms", "PLAIN"),
        ("sasl.mechanism.controller.protocol", "PLAIN"),
        (
            "listener.name.controller.plain.sasl.jaas.config",
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f"{admin} user_{ADMIN_USER}={_jaas_quote(admin_password)};",
        ),
        ("authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer"),
        ("allow.everyone.if.no.acl.found", "false"),
        ("super.users", f"User:{ADMIN_USER}"),
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
    header = "# Written by lintas_deploy.kafka.start_kafka; rewritten on every start.\n"
    return header + properties_text(props)


def kafka_process(state_dir: Path) -> ManagedProcess:
    """Return the ManagedProcess handle of the Kafka broker under ``state_dir``."""
    return ManagedProcess("kafka", Path(state_dir).resolve())


def kafka_address(state_dir: Path) -> str | None:
    """Return ``host:port`` of the client listener last configured in ``state_dir``."""
    props = _read(Path(state_dir).resolve() / "kafka" / "server.properties")
    for line in (props or "").splitlines():
        if line.startswith("advertised.listeners="):
            return line.split("=", 1)[1].split("://", 1)[-1]
    return None


def _users_stamp(users: dict[str, str], salt: str) -> str:
    """What the storage was formatted with: a salted hash, so the file holds no password."""
    digest = hashlib.sha256(salt.encode() + b"\0")
    for name, password in sorted(users.items()):
        digest.update(f"{name}\0{password}\0".encode())
    return f"{SCRAM_MECHANISM} {salt} {digest.hexdigest()}"


def _formatted_with(stamp: str | None, users: dict[str, str]) -> bool:
    """Whether `stamp` (a ``scram.stamp`` file's text) was written for exactly `users`."""
    parts = (stamp or "").split()
    return len(parts) == 3 and _users_stamp(users, parts[1]) == stamp


def _check_users(users: dict[str, str]) -> None:
    """Names and passwords must survive ``--add-scram 'MECH=[name=..,password=..]'``."""
    for name, password in users.items():
        for value in (name, password):
            if not value or any(c in value for c in '"\\,[]= ') or not value.isprintable():
                raise ValueError(
                    "Kafka user names and passwords must be printable, without spaces or "
                    'any of " \\ , [ ] ='
                )


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
    users: dict[str, str] | None = None,
) -> ManagedProcess:
    """Start the Kafka broker (KRaft, broker+controller) on 127.0.0.1 and wait until ready.

    Idempotent: if the broker under ``state_dir`` already runs, it is returned as is.
    Provisions the jars if needed, writes ``state_dir/kafka/server.properties`` and
    ``log4j.properties``, formats ``state_dir/kafka/data`` once (the cluster id is kept
    in ``state_dir/kafka/cluster.id`` so restarts reuse it), starts
    ``java ... kafka.Kafka server.properties`` and waits until the port answers and the
    log says "Kafka Server started". On failure the process is stopped and RuntimeError
    carries the log tail; PortInUseError if a port is taken by a process we did not start.

    ``users`` (name to password; default ``dev_users()``) are the SCRAM users, and must
    include ``ADMIN_USER``. They can only be written when the storage is formatted, so
    storage formatted with other users (or before SASL) is formatted afresh: its records
    are lost. A broker still running with a configuration from before SASL is restarted.
    """
    state_dir = Path(state_dir).resolve()
    proc = kafka_process(state_dir)
    kafka_dir = state_dir / "kafka"
    users = dict(users if users is not None else dev_users())
    if ADMIN_USER not in users:
        raise ValueError(f"the Kafka users must include {ADMIN_USER!r}")
    _check_users(users)
    with file_lock(state_dir / "run" / "kafka.lock"):
        if proc.is_running():
            running = _read(kafka_dir / "server.properties") or ""
            if "sasl.enabled.mechanisms=" in running:
                return proc
            progress("kafka: the running broker predates SASL; restarting it")
            proc.stop()
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
        server_props.touch(mode=0o600)
        server_props.chmod(0o600)  # it holds the admin's password
        server_props.write_text(
            _server_properties(data_dir, port, controller_port, partitions, users[ADMIN_USER])
        )
        log4j = kafka_dir / "log4j.properties"
        log4j.write_text(_LOG4J_PROPERTIES)

        def run_tool(*args: str) -> str:
            return _storage_tool(java, jars_dir, log4j, *args)

        stamp_file = kafka_dir / "scram.stamp"
        formatted = (data_dir / "meta.properties").exists()
        if formatted and not _formatted_with(_read(stamp_file), users):
            progress(
                f"kafka: {data_dir} was formatted with other SCRAM users (or before SASL); "
                "formatting it afresh, its records are lost"
            )
            shutil.rmtree(data_dir)
            data_dir.mkdir(parents=True)
            (kafka_dir / "cluster.id").unlink(missing_ok=True)
        cluster_id = _cluster_id(kafka_dir, data_dir, run_tool)
        if not (data_dir / "meta.properties").exists():
            progress(f"kafka: formatting {data_dir} (cluster id {cluster_id})")
            scram = [
                arg
                for name, password in sorted(users.items())
                for arg in (
                    "--add-scram",
                    f"{SCRAM_MECHANISM}=[name={name},password={password}]",
                )
            ]
            run_tool(
                "format",
                "-t",
                cluster_id,
                "-c",
                str(server_props),
                "--ignore-formatted",
                *scram,
            )
            stamp_file.write_text(_users_stamp(users, secrets.token_hex(16)) + "\n")

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
