"""docker-compose.yml and the service Dockerfiles agree with the code they run.

No Docker engine is needed: these read the files and compare them with the services'
settings classes, so a renamed setting, a changed port or a typo fails here rather than
in a container nobody on the local route starts.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from lintas_console.settings import ConsoleSettings
from lintas_intake.settings import IntakeSettings
from lintas_notify.settings import NotifySettings
from lintas_referral.settings import ReferralSettings
from lintas_shared.http_server import KEEP_ALIVE_SECONDS, UVICORN_HTTP
from lintas_shared.kafka_access import ACCESS
from lintas_shared.kafka_auth import ADMIN_PRINCIPAL
from lintas_shared.person_tokens import (
    INTAKE_AUDIENCE,
    PersonClaims,
    PersonTokenVerifier,
    Role,
    issue_person_token,
)
from lintas_shared.settings import DEV_SECRET_PREFIX, CommonSettings
from pydantic import SecretStr

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
LOOPBACK = "127.0.0.1"
# Inside its container a service binds every interface; compose publishes it on LOOPBACK.
CONTAINER_HOST = "0.0.0.0"  # noqa: S104
COMMON_PREFIX = "LINTAS_"
WORKSPACE_MEMBER_COPY = re.compile(r"COPY (\S+)/pyproject\.toml \1/")

ServiceSettings = IntakeSettings | ReferralSettings | NotifySettings | ConsoleSettings


@dataclass(frozen=True)
class Service:
    """One of the services (or the console), as the code defines it."""

    name: str
    settings_class: type[ServiceSettings]

    @property
    def prefix(self) -> str:
        return f"LINTAS_{self.name.upper()}_"

    @property
    def package(self) -> str:
        return f"lintas_{self.name}"

    @property
    def dockerfile(self) -> Path:
        return REPO_ROOT / "services" / self.name / "Dockerfile"


#: The services that read and write Kafka.
EVENT_SERVICES = (
    Service("intake", IntakeSettings),
    Service("referral", ReferralSettings),
    Service("notify", NotifySettings),
)
#: The web console: MongoDB for people and sessions, and intake's and referral's APIs.
CONSOLE = Service("console", ConsoleSettings)
SERVICES = (*EVENT_SERVICES, CONSOLE)
BY_NAME = pytest.mark.parametrize("service", SERVICES, ids=[s.name for s in SERVICES])
BY_EVENT_SERVICE = pytest.mark.parametrize(
    "service", EVENT_SERVICES, ids=[s.name for s in EVENT_SERVICES]
)
#: The services that accept the person tokens the console signs.
TOKEN_VERIFIERS = ("intake", "referral")


@dataclass(frozen=True)
class Published:
    """One `ports:` entry of a compose service."""

    host_ip: str
    published: int
    target: int


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No LINTAS_* variable from the caller's shell leaks into a settings default."""
    for name in list(os.environ):
        if name.upper().startswith(COMMON_PREFIX):
            monkeypatch.delenv(name)
    # Defaults are read as on the dev stack (nothing defaults to dev); a test that
    # copies a compose environment in gets that environment's LINTAS_ENVIRONMENT.
    monkeypatch.setenv("LINTAS_ENVIRONMENT", "dev")
    return monkeypatch


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _service(compose: Mapping[str, Any], name: str) -> dict[str, Any]:
    services = compose["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    found = services[name]
    assert isinstance(found, dict)
    return found


#: What the operator's shell gives compose for each `${VAR:?…}` (a secret) in these tests.
OPERATOR_SECRETS = {
    name: f"{name.lower()}-{'x' * 40}"
    for name in re.findall(r"\$\{([A-Z0-9_]+):\?", COMPOSE_FILE.read_text(encoding="utf-8"))
}
#: The secrets every service checks: CommonSettings' fields that ship a placeholder.
COMMON_SECRETS = [
    f"LINTAS_{name.upper()}"
    for name, info in CommonSettings.model_fields.items()
    if isinstance(info.default, SecretStr)
    and info.default.get_secret_value().startswith(DEV_SECRET_PREFIX)
]
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:[?-])(?P<arg>[^}]*))?\}")


def _interpolate(value: str, shell: Mapping[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` against `shell`."""

    def one(match: re.Match[str]) -> str:
        found = shell.get(match["name"], "")
        if found:
            return found
        if match["op"] == ":?":
            raise LookupError(f"compose refuses to start: {match['arg']}")
        return match["arg"] or ""

    return INTERPOLATION.sub(one, value)


def _environment(
    definition: Mapping[str, Any], shell: Mapping[str, str] = OPERATOR_SECRETS
) -> dict[str, str]:
    """A service's `environment:`, in either the mapping or the list form, with the
    operator's `shell` interpolated."""
    raw = definition.get("environment", {})
    if isinstance(raw, list):
        pairs = (item.split("=", 1) for item in raw)
        return {key: _interpolate(value, shell) for key, value in pairs}
    return {
        key: "" if value is None else _interpolate(str(value), shell) for key, value in raw.items()
    }


def _ports(definition: Mapping[str, Any]) -> list[Published]:
    """A service's `ports:`, in either the short or the long syntax."""
    found = []
    for entry in definition.get("ports", []):
        if isinstance(entry, dict):
            found.append(
                Published(
                    str(entry.get("host_ip", "")), int(entry["published"]), int(entry["target"])
                )
            )
            continue
        parts = str(entry).split("/", 1)[0].split(":")
        if len(parts) == 3:
            host_ip, published, target = parts
        elif len(parts) == 2:
            host_ip, (published, target) = "", parts
        else:
            host_ip, published, target = "", parts[0], parts[0]
        found.append(Published(host_ip, int(published), int(target)))
    return found


def _command(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def _default_port(service: Service) -> int:
    return service.settings_class().port


@dataclass(frozen=True)
class Dockerfile:
    """The instructions of a service's Dockerfile that the compose stack relies on."""

    exposed: list[int]
    cmd: list[str]
    copies: list[str]
    runs: list[str]


def _dockerfile(service: Service) -> Dockerfile:
    exposed: list[int] = []
    cmd: list[str] = []
    copies: list[str] = []
    runs: list[str] = []
    for line in service.dockerfile.read_text(encoding="utf-8").splitlines():
        keyword, _, rest = line.strip().partition(" ")
        if keyword == "EXPOSE":
            exposed += [int(port.split("/")[0]) for port in rest.split()]
        elif keyword == "CMD":
            cmd = json.loads(rest)
        elif keyword == "COPY":
            copies.append(rest)
        elif keyword == "RUN":
            runs.append(rest)
    return Dockerfile(exposed, cmd, copies, runs)


def _option(argv: list[str], flag: str) -> str:
    assert flag in argv, f"{flag} missing from {argv}"
    return argv[argv.index(flag) + 1]


# (a) each service publishes exactly its settings' default port, on the loopback address


@BY_NAME
def test_service_publishes_its_default_port_on_loopback(
    compose: dict[str, Any], service: Service, clean_env: pytest.MonkeyPatch
) -> None:
    port = _default_port(service)
    assert _ports(_service(compose, service.name)) == [Published(LOOPBACK, port, port)]


@BY_NAME
def test_service_listens_where_it_publishes(
    compose: dict[str, Any], service: Service, clean_env: pytest.MonkeyPatch
) -> None:
    """Loading the compose environment gives settings that bind where compose points."""
    for name, value in _environment(_service(compose, service.name)).items():
        clean_env.setenv(name, value)
    settings = service.settings_class()
    assert settings.host == CONTAINER_HOST
    assert settings.port == _ports(_service(compose, service.name))[0].target
    assert settings.common.environment == "production"


# (b) every LINTAS_* variable compose sets is a real setting of that service


def _unknown_settings(service: Service, environment: Mapping[str, str]) -> list[str]:
    own = set(service.settings_class.model_fields) - {"common"}
    common = set(CommonSettings.model_fields)
    unknown = []
    for name in environment:
        if not name.startswith(COMMON_PREFIX):
            continue
        # A common setting may start like the service's own ones: the console's
        # LINTAS_CONSOLE_PUBLIC_KEY is CommonSettings.console_public_key.
        known = (
            name.startswith(service.prefix) and name.removeprefix(service.prefix).lower() in own
        ) or name.removeprefix(COMMON_PREFIX).lower() in common
        if not known:
            unknown.append(name)
    return unknown


@BY_NAME
def test_every_lintas_variable_is_a_setting(compose: dict[str, Any], service: Service) -> None:
    environment = _environment(_service(compose, service.name))
    assert f"{service.prefix}PORT" in environment
    assert _unknown_settings(service, environment) == []


def test_a_misspelt_variable_is_reported() -> None:
    intake = SERVICES[0]
    environment = {
        "LINTAS_INTAKE_PORT": "8080",
        "LINTAS_KAFKA_BOOTSTRAP": "kafka:29092",
        "LINTAS_INTAKE_PROT": "8080",
        "LINTAS_KAFKA_BOOTSTRAPS": "kafka:29092",
        "LINTAS_REFERRAL_PORT": "8081",
        "LINTAS_INTAKE_COMMON": "{}",
    }
    assert _unknown_settings(intake, environment) == [
        "LINTAS_INTAKE_PROT",
        "LINTAS_KAFKA_BOOTSTRAPS",
        "LINTAS_REFERRAL_PORT",
        "LINTAS_INTAKE_COMMON",
    ]


@BY_EVENT_SERVICE
def test_service_reaches_kafka_and_mongodb_inside_the_network(
    compose: dict[str, Any], service: Service
) -> None:
    environment = _environment(_service(compose, service.name))
    kafka = _environment(_service(compose, "kafka"))
    advertised = kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert environment["LINTAS_KAFKA_BOOTSTRAP"] == "kafka:29092"
    assert f"SASL_PLAINTEXT://{environment['LINTAS_KAFKA_BOOTSTRAP']}" in advertised
    assert environment["LINTAS_MONGODB_URI"] == "mongodb://mongodb:27017/?replicaSet=rs0"
    assert environment["LINTAS_ENVIRONMENT"] == "production"


@BY_NAME
def test_compose_takes_every_secret_from_the_operator_and_never_runs_as_dev(
    compose: dict[str, Any], service: Service, clean_env: pytest.MonkeyPatch
) -> None:
    """Not dev: each secret the service checks comes from the operator's environment
    (`${VAR:?…}`: compose stops without it), and the service starts with real ones."""
    definition = _service(compose, service.name)
    raw = {k: str(v) for k, v in definition["environment"].items()}
    environment = _environment(definition)
    assert environment["LINTAS_ENVIRONMENT"] == "production"
    secrets = [*COMMON_SECRETS]
    secrets += {
        "referral": ["LINTAS_REFERRAL_OPERATOR_TOKEN"],
        "notify": ["LINTAS_NOTIFY_INBOUND_TOKEN"],
    }.get(service.name, [])
    for name in secrets:
        given = re.fullmatch(r"\$\{([A-Z0-9_]+):\?[^}]*\}", raw.get(name, ""))
        assert given, f"{name} must come from the operator's environment (${{…:?…}})"
        without = {k: v for k, v in OPERATOR_SECRETS.items() if k != given[1]}
        with pytest.raises(LookupError, match=given[1]):
            _environment(definition, without)
    for name, value in environment.items():
        clean_env.setenv(name, value)
    assert service.settings_class().common.environment == "production"
    # The dev stack's placeholders are refused here.
    clean_env.setenv("LINTAS_MASTER_KEY", "dev-only-master-key")
    with pytest.raises(ValueError, match="LINTAS_MASTER_KEY is a published placeholder"):
        service.settings_class()


@BY_NAME
def test_dockerfile_does_not_run_as_dev(service: Service) -> None:
    text = service.dockerfile.read_text(encoding="utf-8")
    assert "LINTAS_ENVIRONMENT=production" in text
    assert "LINTAS_ENVIRONMENT=dev" not in text


def test_notify_writes_its_sms_outbox_to_a_named_volume(compose: dict[str, Any]) -> None:
    notify = _service(compose, "notify")
    outbox = Path(_environment(notify)["LINTAS_NOTIFY_SMS_OUTBOX_PATH"])
    assert outbox == Path("/data/sms-outbox.jsonl")
    mounts = dict(str(volume).split(":", 1) for volume in notify["volumes"])
    assert mounts == {"notify-data": "/data"}
    assert "notify-data" in compose["volumes"]
    assert outbox.is_relative_to(mounts["notify-data"])


@BY_EVENT_SERVICE
def test_service_waits_for_healthy_servers_and_checks_readiness(
    compose: dict[str, Any], service: Service, clean_env: pytest.MonkeyPatch
) -> None:
    definition = _service(compose, service.name)
    assert definition["depends_on"] == {
        "mongodb": {"condition": "service_healthy"},
        # kafka-setup itself waits for a healthy Kafka, then sets the ACLs.
        "kafka-setup": {"condition": "service_completed_successfully"},
    }
    setup = _service(compose, "kafka-setup")
    assert setup["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert definition["restart"] == "unless-stopped"
    probe = " ".join(_command(definition["healthcheck"]["test"]))
    assert f"http://127.0.0.1:{_default_port(service)}/readyz" in probe
    assert "urllib.request" in probe


# (c) each Dockerfile runs a factory that exists, on the port it exposes


@BY_NAME
def test_dockerfile_runs_the_factory_on_the_default_port(
    service: Service, clean_env: pytest.MonkeyPatch
) -> None:
    dockerfile = _dockerfile(service)
    port = _default_port(service)
    assert dockerfile.cmd[0] == "/app/.venv/bin/uvicorn"
    module_name, _, attribute = _option(dockerfile.cmd, "--factory").partition(":")
    assert module_name == f"{service.package}.bootstrap"
    factory = getattr(importlib.import_module(module_name), attribute)
    assert callable(factory)
    assert _option(dockerfile.cmd, "--host") == CONTAINER_HOST
    assert _option(dockerfile.cmd, "--port") == str(port)
    assert _option(dockerfile.cmd, "--http") == UVICORN_HTTP  # the head deadline
    assert _option(dockerfile.cmd, "--timeout-keep-alive") == str(KEEP_ALIVE_SECONDS)
    assert dockerfile.exposed == [port]


@BY_NAME
def test_compose_builds_each_service_from_its_dockerfile(
    compose: dict[str, Any], service: Service
) -> None:
    build = _service(compose, service.name)["build"]
    assert (COMPOSE_FILE.parent / build["context"]).resolve() == REPO_ROOT
    assert build["dockerfile"] == f"services/{service.name}/Dockerfile"
    assert (REPO_ROOT / build["dockerfile"]).is_file()


@BY_NAME
def test_dockerfile_installs_the_locked_service_package(service: Service) -> None:
    dockerfile = _dockerfile(service)
    syncs = [run for run in dockerfile.runs if run.startswith("uv sync")]
    assert syncs, "no `uv sync` in the Dockerfile"
    for sync in syncs:
        argv = shlex.split(sync)
        assert "--frozen" in argv
        assert "--no-dev" in argv
        assert _option(argv, "--package") == f"lintas-{service.name}"
    assert f"services/{service.name}/src services/{service.name}/src" in dockerfile.copies
    assert "shared/src shared/src" in dockerfile.copies


@BY_NAME
def test_dockerfile_copies_every_workspace_member(service: Service) -> None:
    """uv resolves the whole workspace: each member's pyproject.toml must be in the image."""
    root = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    members: list[str] = root["tool"]["uv"]["workspace"]["members"]
    copies = _dockerfile(service).copies
    assert "pyproject.toml uv.lock ./" in copies
    missing = [m for m in members if f"{m}/pyproject.toml {m}/" not in copies]
    assert missing == []


def test_dockerfiles_differ_only_in_service_and_port(clean_env: pytest.MonkeyPatch) -> None:
    def shape(service: Service) -> str:
        port = re.compile(rf"\b{_default_port(service)}\b")
        lines = []
        for line in service.dockerfile.read_text(encoding="utf-8").splitlines():
            if not WORKSPACE_MEMBER_COPY.fullmatch(line):  # the same in every Dockerfile
                line = port.sub("<port>", line.replace(service.name, "<name>"))
            lines.append(line)
        return "\n".join(lines)

    shapes = {service.name: shape(service) for service in SERVICES}
    assert shapes["referral"] == shapes["intake"]
    assert shapes["notify"] == shapes["intake"]
    assert shapes["console"] == shapes["intake"]


# (d) the console: its store, the services it calls, and the key pair it signs with


def test_console_reaches_mongodb_and_the_services_inside_the_network(
    compose: dict[str, Any], clean_env: pytest.MonkeyPatch
) -> None:
    console = _service(compose, "console")
    environment = _environment(console)
    assert environment["LINTAS_MONGODB_URI"] == "mongodb://mongodb:27017/?replicaSet=rs0"
    assert environment["LINTAS_ENVIRONMENT"] == "production"
    assert "LINTAS_KAFKA_BOOTSTRAP" not in environment  # it reads and writes no topic
    for name, value in environment.items():
        clean_env.setenv(name, value)
    settings = ConsoleSettings()
    intake_port = _ports(_service(compose, "intake"))[0].target
    referral_port = _ports(_service(compose, "referral"))[0].target
    assert settings.intake_url == f"http://intake:{intake_port}"
    assert settings.referral_url == f"http://referral:{referral_port}"
    published = _ports(console)[0].published
    assert settings.public_url == f"http://{LOOPBACK}:{published}"
    assert settings.common.console_public_key is not None


def test_console_waits_for_its_store_and_the_services_it_calls(
    compose: dict[str, Any], clean_env: pytest.MonkeyPatch
) -> None:
    console = _service(compose, "console")
    assert console["depends_on"] == {
        "mongodb": {"condition": "service_healthy"},
        "intake": {"condition": "service_healthy"},
        "referral": {"condition": "service_healthy"},
    }
    assert console["restart"] == "unless-stopped"
    probe = " ".join(_command(console["healthcheck"]["test"]))
    assert f"http://127.0.0.1:{_default_port(CONSOLE)}/readyz" in probe


def test_services_verify_what_the_console_signs(
    compose: dict[str, Any], clean_env: pytest.MonkeyPatch
) -> None:
    """The signing key the console is given and the public key intake and referral are
    given are one Ed25519 pair: a token the console signs verifies."""
    console = _service(compose, "console")
    [mounted] = console["configs"]
    key_path = _environment(console)["LINTAS_CONSOLE_SIGNING_KEY_PATH"]
    assert mounted["target"] == key_path
    private_pem = compose["configs"][mounted["source"]]["content"]
    private = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    for name in (*TOKEN_VERIFIERS, "console"):
        assert _environment(_service(compose, name))["LINTAS_CONSOLE_PUBLIC_KEY"] == public_pem
    claims = PersonClaims("org-demo-ngo-id", "person-1", Role.CASEWORKER)
    token = issue_person_token(private_pem, claims, INTAKE_AUDIENCE)
    assert PersonTokenVerifier(public_pem, INTAKE_AUDIENCE).verify(token) == claims


# (e) everything is published on the loopback address only


def test_every_published_port_is_loopback_only(compose: dict[str, Any]) -> None:
    exposed = {
        (name, port.host_ip)
        for name, definition in compose["services"].items()
        for port in _ports(definition)
        if port.host_ip != LOOPBACK
    }
    assert exposed == set()


def test_servers_publish_their_usual_ports_on_loopback(compose: dict[str, Any]) -> None:
    assert _ports(_service(compose, "mongodb")) == [Published(LOOPBACK, 27017, 27017)]
    assert _ports(_service(compose, "kafka")) == [Published(LOOPBACK, 9092, 9092)]
    kafka = _environment(_service(compose, "kafka"))
    assert "EXTERNAL://127.0.0.1:9092" in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")


# (f) the servers are the ones the design names


def test_mongodb_is_mongo_7_as_a_replica_set(compose: dict[str, Any]) -> None:
    mongodb = _service(compose, "mongodb")
    assert mongodb["image"] == "mongo:7"
    command = _command(mongodb["command"])
    assert _option(command, "--replSet") == "rs0"
    assert "--bind_ip_all" in command
    probe = " ".join(_command(mongodb["healthcheck"]["test"]))
    assert "rs.initiate(" in probe
    assert 'host: "mongodb:27017"' in probe
    assert "isWritablePrimary" in probe


def test_kafka_is_apache_kafka_3_9_1_in_kraft_mode(
    compose: dict[str, Any], clean_env: pytest.MonkeyPatch
) -> None:
    kafka = _service(compose, "kafka")
    assert kafka["image"] == "apache/kafka:3.9.1"
    environment = _environment(kafka)
    assert environment["KAFKA_NODE_ID"] == "1"
    assert environment["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert environment["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert environment["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert environment["KAFKA_NUM_PARTITIONS"] == str(CommonSettings().topic_partitions)
    probe = " ".join(_command(kafka["healthcheck"]["test"]))
    # Kafka's own tool, logged in as the admin (every listener needs a login).
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh --bootstrap-server localhost:29092" in probe
    assert "--command-config" in probe
    assert "$$LINTAS_ADMIN_KAFKA_PASSWORD" in probe


def test_servers_keep_their_data_in_named_volumes(compose: dict[str, Any]) -> None:
    def mounts(name: str) -> dict[str, str]:
        volumes = _service(compose, name)["volumes"]
        return dict(str(volume).split(":", 1) for volume in volumes)

    assert mounts("mongodb")["mongodb-data"] == "/data/db"
    kafka = mounts("kafka")
    assert kafka["kafka-data"] == _environment(_service(compose, "kafka"))["KAFKA_LOG_DIRS"]
    assert {"mongodb-data", "kafka-data"} <= set(compose["volumes"])


# (g) Kafka: every listener needs a login, and the ACLs are the one table


def _jaas_users(text: str) -> dict[str, str]:
    return dict(re.findall(r'user_([a-z]+)="([^"]*)"', text))


def test_kafka_needs_a_login_on_every_listener_and_denies_what_no_acl_allows(
    compose: dict[str, Any],
) -> None:
    kafka = _environment(_service(compose, "kafka"))
    protocols = dict(p.split(":") for p in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}, protocols
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert kafka["KAFKA_SUPER_USERS"] == f"User:{ADMIN_PRINCIPAL}"
    for listener in protocols:  # each listener knows the same users
        name = listener.replace("_", "__")
        assert _jaas_users(kafka[f"KAFKA_LISTENER_NAME_{name}_PLAIN_SASL_JAAS_CONFIG"])


@BY_EVENT_SERVICE
def test_each_service_logs_in_as_its_own_principal(
    compose: dict[str, Any], service: Service
) -> None:
    kafka = _environment(_service(compose, "kafka"))
    users = _jaas_users(kafka["KAFKA_LISTENER_NAME_SASL__PLAINTEXT_PLAIN_SASL_JAAS_CONFIG"])
    environment = _environment(_service(compose, service.name))
    assert environment["LINTAS_KAFKA_SASL_MECHANISM"] == "PLAIN"
    assert "LINTAS_KAFKA_USERNAME" not in environment  # it logs in under its own name
    assert users[service.name] == environment["LINTAS_KAFKA_PASSWORD"]
    others = {name: pw for name, pw in users.items() if name != service.name}
    assert environment["LINTAS_KAFKA_PASSWORD"] not in others.values()
    assert set(users) == {ADMIN_PRINCIPAL, *ACCESS}


def test_the_acls_are_set_before_any_service_starts(compose: dict[str, Any]) -> None:
    setup = _service(compose, "kafka-setup")
    assert setup["command"][-2:] == ["-m", "lintas_shared.kafka_access"]
    environment = _environment(setup)
    assert environment["LINTAS_KAFKA_USERNAME"] == ADMIN_PRINCIPAL
    kafka = _environment(_service(compose, "kafka"))
    users = _jaas_users(kafka["KAFKA_LISTENER_NAME_SASL__PLAINTEXT_PLAIN_SASL_JAAS_CONFIG"])
    assert environment["LINTAS_KAFKA_PASSWORD"] == users[ADMIN_PRINCIPAL]
    for service in EVENT_SERVICES:
        depends = _service(compose, service.name)["depends_on"]
        assert depends["kafka-setup"] == {"condition": "service_completed_successfully"}
