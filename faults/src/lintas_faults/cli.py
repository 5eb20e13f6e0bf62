"""`python -m lintas_faults`: one fault-injection run, its table, and an exit code."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

from lintas_faults.chaos import Action, plan, run_chaos
from lintas_faults.driver import Progress, drive
from lintas_faults.stack import FaultStack, Ports
from lintas_faults.verify import Table, build_table, wait_settled

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Options:
    """One run's parameters."""

    cases: int = 2000
    seed: int | None = None
    kills: int = 3
    concurrency: int = 16
    base_port: int = 25000
    big_poison_bytes: int = 2_000_000
    settle_seconds: float = 600.0
    quiet_seconds: float = 10.0
    per_case_seconds: float = 300.0
    out_dir: Path = REPO_ROOT / ".lintas" / "faults"
    cache_dir: Path = REPO_ROOT / ".lintas" / "cache"
    keep_state: bool = False
    rate: float = 0.0
    #: Every n-th case is closed right after its 201 (the order check); 0 for none.
    close_every: int = 4


def _stamp_say(say: Callable[[str], None]) -> Callable[[str], None]:
    began = time.monotonic()

    def stamped(message: str) -> None:
        say(f"[faults {time.monotonic() - began:7.1f}s] {message}")

    return stamped


def run(options: Options, say: Callable[[str], None] = print) -> Table:
    """Start everything, load and break it, check, stop everything; returns the table."""
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(10**6)
    say = _stamp_say(say)
    say(f"seed {seed} (replay with --seed {seed})")
    run_id = f"{seed}-{int(time.time())}"
    state = options.out_dir / f"run-{run_id}"
    stack = FaultStack(state, options.cache_dir, Ports(options.base_port), progress=say)
    actions = plan(
        seed, [f"{s}-{i}" for s in ("intake", "referral", "notify") for i in (1, 2)], options.kills
    )
    for action in actions:
        say(f"planned: {action.describe()}")
    try:
        stack.start()
        table = asyncio.run(_load_and_check(stack, options, seed, run_id, actions, say))
    finally:
        say("stopping every process this run started")
        stack.stop()
        if not options.keep_state:
            for data in ("kafka", "ferretdb"):
                shutil.rmtree(state / data, ignore_errors=True)
    options.out_dir.mkdir(parents=True, exist_ok=True)
    text = table.to_json()
    (options.out_dir / f"result-{run_id}.json").write_text(text + "\n")
    (options.out_dir / "latest.json").write_text(text + "\n")
    say(f"table written to {options.out_dir / 'latest.json'}; logs in {state / 'logs'}")
    return table


async def _load_and_check(
    stack: FaultStack,
    options: Options,
    seed: int,
    run_id: str,
    actions: list[Action],
    say: Callable[[str], None],
) -> Table:
    progress = Progress(options.cases)
    say(f"driving {options.cases} cases through {', '.join(stack.urls('intake'))}")
    began = time.monotonic()
    chaos_task = asyncio.create_task(
        run_chaos(
            stack,
            actions,
            progress,
            big_poison_bytes=options.big_poison_bytes,
            tag=run_id,
            wait_seconds=options.per_case_seconds,
            say=say,
        )
    )
    try:
        subs = await drive(
            stack.urls("intake"),
            stack.keys["ngo_id"],
            run_id.replace("-", ""),
            options.cases,
            progress,
            concurrency=options.concurrency,
            per_case_seconds=options.per_case_seconds,
            seed=seed,
            rate=options.rate,
            close_every=options.close_every,
        )
        say(f"driver done in {time.monotonic() - began:.1f}s; waiting for the chaos schedule")
        chaos = await chaos_task
    except BaseException:
        chaos_task.cancel()
        raise
    say(f"chaos done ({len(chaos.done)} actions, {len(chaos.errors)} failed); settling")
    snap = await wait_settled(
        subs,
        stack.mongodb_uri,
        stack.sms_outbox,
        options.settle_seconds,
        options.quiet_seconds,
        say,
    )
    table = await build_table(seed, subs, snap, stack.bootstrap, chaos.poison)
    table.chaos = {
        "actions": chaos.done,
        "errors": chaos.errors,
        "kills": {i.name: i.kills for i in stack.instances},
        "rewound_records": chaos.redelivered,
        "driver_retries": sum(s.attempts - 1 for s in subs),
        "elapsed_seconds": round(time.monotonic() - began, 1),
        "options": {k: str(v) for k, v in asdict(options).items()},
    }
    if chaos.errors:
        table.passed = False
    return table


def _parse(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="lintas_faults", description=__doc__)
    p.add_argument("--cases", type=int, default=2000, help="cases to submit [2000]")
    p.add_argument("--seed", type=int, default=None, help="chaos seed (printed; replays a run)")
    p.add_argument("--kills", type=int, default=3, help="SIGKILLs per service process [3]")
    p.add_argument("--concurrency", type=int, default=16, help="concurrent submissions [16]")
    p.add_argument("--base-port", type=int, default=25000, help="first of 16 ports [25000]")
    p.add_argument(
        "--big-poison-bytes", type=int, default=2_000_000, help="size of the big poison [2 MB]"
    )
    p.add_argument("--settle-seconds", type=float, default=600.0, help="bound on settling [600]")
    p.add_argument("--rate", type=float, default=0.0, help="cases/s, 0 = unpaced [0]")
    p.add_argument(
        "--close-every",
        type=int,
        default=4,
        help="close every n-th case right after its 201, to check event order [4; 0 = none]",
    )
    p.add_argument("--keep-state", action="store_true", help="keep Kafka and FerretDB data")
    a = p.parse_args(argv)
    return Options(
        cases=a.cases,
        seed=a.seed,
        kills=a.kills,
        concurrency=a.concurrency,
        base_port=a.base_port,
        big_poison_bytes=a.big_poison_bytes,
        settle_seconds=a.settle_seconds,
        keep_state=a.keep_state,
        rate=a.rate,
        close_every=a.close_every,
    )


def main(argv: list[str] | None = None) -> int:
    """Run once; exit 0 only if lost = 0, duplicates = 0 and DLQ = poison."""
    options = _parse(argv)

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwinds through run()'s finally: everything is stopped

    signal.signal(signal.SIGTERM, interrupted)
    try:
        table = run(options)
    except KeyboardInterrupt:
        print("interrupted; everything this run started was stopped", file=sys.stderr)
        return 130
    print(table.render())
    if table.examples:
        print(json.dumps(table.examples, indent=2))
    return 0 if table.passed else 1
