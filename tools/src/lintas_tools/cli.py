"""`lintas`: run the whole local stack, and operate it.

lintas up        start Kafka, FerretDB and the three services, seed demo data
lintas down      stop everything `up` started
lintas status    what is running
lintas demo-seed (re)create the demo organisations and keys
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from lintas_deploy.ferretdb import ferretdb_process, start_ferretdb
from lintas_deploy.kafka import kafka_process, start_kafka
from lintas_intake.settings import IntakeSettings
from lintas_referral.settings import ReferralSettings
from lintas_shared.kafka import ensure_topics
from lintas_shared.topics import ALL_TOPICS

from lintas_tools.demo import DemoTarget, load_or_create_keys, seed_demo
from lintas_tools.services import service_specs, start_service, stop_service


def _say(message: str) -> None:
    print(message, flush=True)


def _state_dir() -> Path:
    return Path(os.environ.get("LINTAS_STATE_DIR", ".lintas")).resolve()


def _stack_env(state: Path) -> dict[str, str]:
    """The environment every service gets: one source of truth for addresses and paths."""
    env = dict(os.environ)
    kafka_port = env.get("LINTAS_KAFKA_PORT", "9092")
    mongo_port = env.get("LINTAS_MONGO_PORT", "27017")
    env.setdefault("LINTAS_KAFKA_BOOTSTRAP", f"127.0.0.1:{kafka_port}")
    env.setdefault("LINTAS_MONGODB_URI", f"mongodb://127.0.0.1:{mongo_port}/")
    env.setdefault("LINTAS_NOTIFY_SMS_OUTBOX_PATH", str(state / "sms-outbox.jsonl"))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _demo_target(env: dict[str, str]) -> DemoTarget:
    intake = IntakeSettings()
    return DemoTarget(
        mongodb_uri=env["LINTAS_MONGODB_URI"],
        intake_database=intake.database,
        referral_database=ReferralSettings().database,
        api_key_pepper=intake.common.api_key_pepper.get_secret_value(),
    )


def cmd_demo_seed(state: Path, env: dict[str, str]) -> Path:
    """Seed demo organisations; returns where their keys are."""
    keys_path = state / "demo-keys.json"
    keys = load_or_create_keys(keys_path)
    asyncio.run(seed_demo(_demo_target(env), keys))
    _say(f"demo organisations seeded; keys in {keys_path}")
    return keys_path


def cmd_up() -> int:
    """Start everything and wait until all of it is healthy."""
    started = time.monotonic()
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
    _say("[3/4] demo organisations")
    keys_path = cmd_demo_seed(state, env)
    # Notify authenticates the SMS provider's callbacks with the demo inbound token.
    env.setdefault(
        "LINTAS_NOTIFY_INBOUND_TOKEN", json.loads(keys_path.read_text())["sms_inbound_token"]
    )
    _say("[4/4] services")
    specs = service_specs(env)
    for spec in specs:
        process = start_service(spec, state, env)
        _say(
            f"      {spec.name:<9} {spec.url}  (pid {process.pid}, "
            f"log {state / 'logs' / (spec.name + '.log')})"
        )
    _say(f"\nLintas is up in {time.monotonic() - started:.0f}s.")
    for spec in specs:
        _say(
            f"  {spec.name:<9} OpenAPI docs {spec.url}/docs   AsyncAPI {spec.url}/v1/asyncapi.json"
        )
    _say(
        f"  Kafka     {env['LINTAS_KAFKA_BOOTSTRAP']}   MongoDB (FerretDB) "
        f"{env['LINTAS_MONGODB_URI']}"
    )
    _say(f"  demo API keys: {keys_path}")
    _say(f"  SMS sent by the file provider: {env['LINTAS_NOTIFY_SMS_OUTBOX_PATH']}")
    _say("Stop everything with: make down")
    return 0


def cmd_down() -> int:
    """Stop the services, then the servers: only processes we started, by pid."""
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

    names = ["kafka", "ferretdb", *(s.name for s in service_specs(os.environ))]
    status = {name: ManagedProcess(name, state).is_running() for name in names}
    _say(json.dumps(status, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `lintas` command."""
    parser = argparse.ArgumentParser(
        prog="lintas", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the whole local stack with demo data")
    sub.add_parser("down", help="stop everything `up` started")
    sub.add_parser("status", help="show which processes are running")
    sub.add_parser("demo-seed", help="(re)create the demo organisations and keys")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            return cmd_up()
        if args.command == "down":
            return cmd_down()
        if args.command == "status":
            return cmd_status()
        state = _state_dir()
        cmd_demo_seed(state, _stack_env(state))
        return 0
    except RuntimeError as exc:
        print(f"lintas: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
