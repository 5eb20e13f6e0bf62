"""`lintas`: run the whole local stack, and operate it (`lintas --help`; the commands
and their arguments are in `lintas_tools.arguments`).

Each command imports the libraries it needs when it runs: `lintas --help` and `lintas
import` start without Kafka's, the store's or the console's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from lintas_console.domain.people import PeopleError
from lintas_deploy.ferretdb import ferretdb_process, start_ferretdb
from lintas_deploy.kafka import kafka_process, start_kafka
from lintas_intake.domain.organisation import OrganisationKind
from lintas_shared.person_tokens import Role
from lintas_shared.topics import ALL_TOPICS
from pydantic import ValidationError

from lintas_tools.arguments import parser

if TYPE_CHECKING:
    from lintas_console.settings import ConsoleSettings
    from lintas_intake.settings import IntakeSettings
    from lintas_referral.settings import ReferralSettings

    from lintas_tools.audit import AuditTarget
    from lintas_tools.demo import DemoTarget
    from lintas_tools.dlq_cli import DlqTarget
    from lintas_tools.organisations import Directories
    from lintas_tools.people import PeopleTarget
    from lintas_tools.services import ServiceSpec


def _say(message: str) -> None:
    print(message, flush=True)


def _state_dir() -> Path:
    return Path(os.environ.get("LINTAS_STATE_DIR", ".lintas")).resolve()


def _dev_stack() -> None:
    """Say this is the dev stack (placeholder secrets allowed), unless the caller said
    otherwise: nothing else defaults to dev. `up` and `demo-seed` only."""
    os.environ.setdefault("LINTAS_ENVIRONMENT", "dev")


def _stack_env(state: Path) -> dict[str, str]:
    """The environment every service gets: one source of truth for addresses and paths."""
    env = dict(os.environ)
    kafka_port = env.get("LINTAS_KAFKA_PORT", "9092")
    mongo_port = env.get("LINTAS_MONGO_PORT", "27017")
    env.setdefault("LINTAS_KAFKA_BOOTSTRAP", f"127.0.0.1:{kafka_port}")
    env.setdefault("LINTAS_MONGODB_URI", f"mongodb://127.0.0.1:{mongo_port}/")
    env.setdefault("LINTAS_NOTIFY_SMS_OUTBOX_PATH", str(state / "sms-outbox.jsonl"))
    env["PYTHONUNBUFFERED"] = "1"
    # Each service logs in to the dev broker as its own principal, with the placeholder
    # password: an admin login set in the shell for `lintas dlq` must not reach them.
    env.pop("LINTAS_KAFKA_USERNAME", None)
    env.pop("LINTAS_KAFKA_PASSWORD", None)
    # The dev stack's own webhook receivers listen on 127.0.0.1; a deployment never sets it.
    if env.get("LINTAS_ENVIRONMENT", "dev") == "dev":
        env.setdefault("LINTAS_REFERRAL_WEBHOOK_ALLOW_LOOPBACK", "true")
    return env


def _intake_settings() -> IntakeSettings:
    from lintas_intake.settings import IntakeSettings

    return IntakeSettings()


def _referral_settings() -> ReferralSettings:
    from lintas_referral.settings import ReferralSettings

    return ReferralSettings()


def _console_settings() -> ConsoleSettings:
    from lintas_console.settings import ConsoleSettings

    return ConsoleSettings()


def _demo_target(env: dict[str, str]) -> DemoTarget:
    from lintas_tools.demo import DemoTarget

    intake = _intake_settings()
    return DemoTarget(
        mongodb_uri=env["LINTAS_MONGODB_URI"],
        intake_database=intake.database,
        referral_database=_referral_settings().database,
        api_key_pepper=intake.common.api_key_pepper.get_secret_value(),
    )


def _console_url(env: Mapping[str, str]) -> str:
    """Where people open the console: its public URL, else where `up` starts it."""
    from lintas_tools.services import service_specs

    spec = next(s for s in service_specs(env) if s.name == "console")
    return env.get("LINTAS_CONSOLE_PUBLIC_URL") or spec.url


def cmd_demo_seed(state: Path, env: dict[str, str]) -> Path:
    """Seed demo organisations and the console's demo people; returns where their keys
    and passwords are."""
    from lintas_tools.demo import (
        load_or_create_keys,
        load_or_create_people,
        seed_demo,
        seed_demo_people,
    )

    keys_path = state / "demo-keys.json"
    keys = load_or_create_keys(keys_path)
    asyncio.run(seed_demo(_demo_target(env), keys))
    people = load_or_create_people(keys_path)
    asyncio.run(seed_demo_people(env["LINTAS_MONGODB_URI"], _console_settings().database, people))
    _say(
        f"demo organisations and console people ({', '.join(people)}) seeded; "
        f"keys and passwords in {keys_path}"
    )
    return keys_path


def _console_env(state: Path, env: dict[str, str], specs: list[ServiceSpec]) -> bool:
    """Give the console its signing key (made once in the state dir), every service its
    public key, and the console the addresses of intake and referral. Returns whether the
    console asks lawyers and admins for a second factor (off on this dev stack unless
    LINTAS_CONSOLE_REQUIRE_SECOND_FACTOR says otherwise)."""
    from lintas_tools.demo import load_or_create_signing_key

    key_path = Path(
        env.get("LINTAS_CONSOLE_SIGNING_KEY_PATH", str(state / "console-signing-key.pem"))
    ).resolve()
    env["LINTAS_CONSOLE_SIGNING_KEY_PATH"] = str(key_path)
    # Always the signing key's own half: a stale value from the shell would refuse
    # every person token.
    env["LINTAS_CONSOLE_PUBLIC_KEY"] = load_or_create_signing_key(key_path)
    urls = {spec.name: spec.url for spec in specs}
    env.setdefault("LINTAS_CONSOLE_INTAKE_URL", urls["intake"])
    env.setdefault("LINTAS_CONSOLE_REFERRAL_URL", urls["referral"])
    env.setdefault("LINTAS_CONSOLE_PUBLIC_URL", urls["console"])
    env.setdefault("LINTAS_CONSOLE_REQUIRE_SECOND_FACTOR", "false")
    return env["LINTAS_CONSOLE_REQUIRE_SECOND_FACTOR"].strip().lower() in {"1", "true", "yes", "on"}


def cmd_up() -> int:
    """Start everything and wait until all of it is healthy."""
    from lintas_shared.kafka import ensure_topics
    from lintas_shared.kafka_access import apply_acls
    from lintas_shared.kafka_auth import client_auth

    from lintas_tools.services import service_specs, start_service

    started = time.monotonic()
    _dev_stack()
    state = _state_dir()
    cache = Path(os.environ.get("LINTAS_CACHE_DIR", state / "cache")).resolve()
    env = _stack_env(state)
    kafka_port = int(env.get("LINTAS_KAFKA_PORT", "9092"))
    controller_port = int(env.get("LINTAS_KAFKA_CONTROLLER_PORT", "9093"))
    mongo_port = int(env.get("LINTAS_MONGO_PORT", "27017"))
    _say("[1/4] Kafka and FerretDB (first run downloads jars and builds FerretDB: minutes)")
    start_kafka(state, cache, port=kafka_port, controller_port=controller_port)
    start_ferretdb(state, cache, port=mongo_port)
    _say("[2/4] Kafka topics")
    created = asyncio.run(
        ensure_topics(
            env["LINTAS_KAFKA_BOOTSTRAP"],
            ALL_TOPICS,
            partitions=int(env.get("LINTAS_TOPIC_PARTITIONS", "6")),
        )
    )
    _say(f"      {len(created)} created, {len(ALL_TOPICS) - len(created)} already there")
    added, removed = asyncio.run(apply_acls(env["LINTAS_KAFKA_BOOTSTRAP"], client_auth()))
    _say(f"      ACLs: one principal per service, {added} added, {removed} removed")
    _say("[3/4] demo organisations and console people")
    keys_path = cmd_demo_seed(state, env)
    # Notify authenticates the SMS provider's callbacks with the demo inbound token.
    env.setdefault(
        "LINTAS_NOTIFY_INBOUND_TOKEN", json.loads(keys_path.read_text())["sms_inbound_token"]
    )
    _say("[4/4] services")
    specs = service_specs(env)
    second_factor = _console_env(state, env, specs)
    for spec in specs:
        process = start_service(spec, state, env)
        _say(
            f"      {spec.name:<9} {spec.url}  (pid {process.pid}, "
            f"log {state / 'logs' / (spec.name + '.log')})"
        )
    _say(f"\nLintas is up in {time.monotonic() - started:.0f}s.")
    _say(f"  console   {env['LINTAS_CONSOLE_PUBLIC_URL']}   sign in as a demo person")
    _say(f'            (emails and passwords under "console" in {keys_path})')
    if not second_factor:
        _say(
            "            second factor off on this dev stack "
            "(LINTAS_CONSOLE_REQUIRE_SECOND_FACTOR=false)"
        )
    for spec in specs:
        if spec.name == "console":
            continue
        _say(
            f"  {spec.name:<9} OpenAPI docs {spec.url}/docs   AsyncAPI {spec.url}/v1/asyncapi.json"
        )
    _say(
        f"  Kafka     {env['LINTAS_KAFKA_BOOTSTRAP']}   MongoDB (FerretDB) "
        f"{env['LINTAS_MONGODB_URI']}"
    )
    _say(f"  demo API keys: {keys_path}")
    _say(f"  SMS sent by the file provider: {env['LINTAS_NOTIFY_SMS_OUTBOX_PATH']}")
    _say(
        "  SMS wait for the worker's quiet hours (21:00-07:00 her time, by default): "
        "`uv run lintas sms waiting` lists them"
    )
    _say("Stop everything with: make down")
    return 0


def cmd_down() -> int:
    """Stop the services, then the servers: only processes we started, by pid."""
    from lintas_tools.services import service_specs, stop_service

    state = _state_dir()
    for spec in reversed(service_specs(os.environ)):
        if stop_service(spec.name, state):
            _say(f"stopped {spec.name}")
    for process in (ferretdb_process(state), kafka_process(state)):
        if process.stop():
            _say(f"stopped {process.name}")
    _say("Lintas is down.")
    return 0


def cmd_status() -> int:
    """Print what is running, as JSON."""
    state = _state_dir()
    from lintas_deploy.processes import ManagedProcess

    from lintas_tools.services import service_specs

    names = ["kafka", "ferretdb", *(s.name for s in service_specs(os.environ))]
    status = {name: ManagedProcess(name, state).is_running() for name in names}
    _say(json.dumps(status, indent=2))
    return 0


def _directories() -> Directories:
    from lintas_tools.organisations import Directories

    intake = _intake_settings()
    return Directories(
        mongodb_uri=_stack_env(_state_dir())["LINTAS_MONGODB_URI"],
        intake_database=intake.database,
        referral_database=_referral_settings().database,
        api_key_pepper=intake.common.api_key_pepper.get_secret_value(),
        api_key_cache_seconds=intake.common.api_key_cache_seconds,
    )


async def _org_command(args: argparse.Namespace) -> object:
    from lintas_tools.organisations import OrganisationAdmin

    admin = OrganisationAdmin(_directories())
    try:
        if args.org_command == "create":
            return await admin.create(
                args.name,
                OrganisationKind(args.kind),
                args.country,
                tuple(args.languages.split(",")) if args.languages else (),
                tuple(args.claim_types.split(",")) if args.claim_types else (),
                args.capacity,
            )
        if args.org_command == "issue-key":
            return await admin.issue_key(args.org_id)
        if args.org_command == "revoke-key":
            return await admin.revoke_key(args.org_id, args.key_id)
        return await admin.list()
    finally:
        await admin.close()


def _people_target() -> PeopleTarget:
    from lintas_tools.people import PeopleTarget

    intake = _intake_settings()
    console = _console_settings()
    return PeopleTarget(
        mongodb_uri=_stack_env(_state_dir())["LINTAS_MONGODB_URI"],
        console_database=console.database,
        intake_database=intake.database,
        api_key_pepper=intake.common.api_key_pepper.get_secret_value(),
        public_url=_console_url(os.environ),
        link_lifetime=timedelta(hours=console.invitation_hours),
    )


async def _user_command(args: argparse.Namespace) -> object:
    from lintas_tools.people import PeopleCommands

    commands = PeopleCommands(_people_target())
    try:
        if args.user_command == "create":
            return await commands.create(
                args.org, Role(args.role), args.email, args.name, args.language
            )
        if args.user_command == "disable":
            return await commands.disable(args.email)
        if args.user_command == "reset-2fa":
            return await commands.reset_second_factor(args.email)
        return await commands.new_link(args.email)
    finally:
        await commands.close()


def _audit_target(witness: Path | None) -> AuditTarget:
    from lintas_tools.audit import AuditTarget

    intake = _intake_settings()
    return AuditTarget(
        mongodb_uri=_stack_env(_state_dir())["LINTAS_MONGODB_URI"],
        intake_database=intake.database,
        referral_database=_referral_settings().database,
        checkpoint_database=intake.common.keyvault_database,
        audit_key=intake.common.audit_key.get_secret_value(),
        witness=witness,
    )


def _keys_rotate() -> int:
    """`lintas keys rotate`: progress as it goes, then the counts as JSON."""
    from lintas_shared.crypto import MasterKeys

    from lintas_tools.keys import KeysTarget, rotate_keys

    referral = _referral_settings()
    common = referral.common
    rotation = asyncio.run(
        rotate_keys(
            KeysTarget(
                mongodb_uri=_stack_env(_state_dir())["LINTAS_MONGODB_URI"],
                keyvault_database=common.keyvault_database,
                referral_database=referral.database,
            ),
            MasterKeys.from_settings(common),
            _say,
        )
    )
    _say(json.dumps(rotation.summary(), indent=2))
    return 0 if rotation.complete else 1


def _dlq_target() -> DlqTarget:
    from lintas_tools import dlq_cli

    env = _stack_env(_state_dir())
    return dlq_cli.DlqTarget(
        kafka_bootstrap=env["LINTAS_KAFKA_BOOTSTRAP"],
        mongodb_uri=env["LINTAS_MONGODB_URI"],
        database=env.get("LINTAS_OPS_DATABASE", dlq_cli.DEFAULT_OPS_DATABASE),
        operator=dlq_cli.default_operator(),
    )


def main(argv: list[str] | None = None, *, out: TextIO | None = None) -> int:
    """Entry point of the `lintas` command.

    `out` receives the answer of `lintas dlq` (default: stdout), so a test can read it
    apart from the logs of whatever else runs in its process.
    """
    args = parser().parse_args(argv)
    try:
        if args.command == "up":
            return cmd_up()
        if args.command == "down":
            return cmd_down()
        if args.command == "status":
            return cmd_status()
        if args.command == "org":
            _say(json.dumps(asyncio.run(_org_command(args)), indent=2))
            return 0
        if args.command == "user":
            _say(json.dumps(asyncio.run(_user_command(args)), indent=2))
            return 0
        if args.command == "import":
            from lintas_tools.importer import run_import

            if not args.api_key:
                raise RuntimeError("--api-key (or LINTAS_API_KEY) is required")
            report = run_import(
                args.file,
                url=args.url,
                api_key=args.api_key,
                report_path=args.report or args.file.with_suffix(".errors.csv"),
                concurrency=args.concurrency,
            )
            return 0 if report.rejected == 0 else 2
        if args.command == "audit":
            from lintas_tools.audit import verify_audit

            result = asyncio.run(verify_audit(_audit_target(args.witness)))
            _say(json.dumps(result, indent=2))
            return 0 if result["intact"] else 1
        if args.command == "dlq":
            from lintas_tools import dlq_cli

            return dlq_cli.run(args, _dlq_target(), out)
        if args.command == "sms":
            from lintas_tools import sms_cli

            return sms_cli.run(args, out or sys.stdout)
        if args.command == "keys":
            return _keys_rotate()
        _dev_stack()
        state = _state_dir()
        cmd_demo_seed(state, _stack_env(state))
        return 0
    except (RuntimeError, KeyError, PeopleError) as exc:
        print(f"lintas: {exc}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        # A setting refused (a placeholder secret outside the dev stack, say): its message
        # names the variable, never its value.
        for error in exc.errors(include_url=False, include_input=False):
            print(f"lintas: {error['msg'].removeprefix('Value error, ')}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
