"""What one benchmark run does: ports, rates, durations, sizes (all from the command line)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from lintas_bench.stats import Arrivals

#: The port range this benchmark may use on a shared machine.
PORT_RANGE = range(24000, 24200)


@dataclass(frozen=True)
class Ports:
    """Where everything the benchmark starts listens (all on 127.0.0.1)."""

    kafka: int = 24092
    kafka_controller: int = 24093
    mongo: int = 24017
    ferretdb_debug: int = 24060
    intake: int = 24080
    referral: int = 24081
    notify: int = 24082

    def check(self) -> None:
        """Refuse ports outside the range reserved for the benchmark, or duplicates."""
        values = list(vars(self).values())
        outside = [p for p in values if p not in PORT_RANGE]
        if outside:
            raise ValueError(f"ports {outside} outside {PORT_RANGE.start}-{PORT_RANGE.stop - 1}")
        if len(set(values)) != len(values):
            raise ValueError(f"ports must differ: {values}")


@dataclass(frozen=True)
class BenchConfig:
    """One run's settings. Defaults fit ~15 minutes on a busy 2-core machine (steps of 60 s,
    as issue 6 defines a sustained rate)."""

    ports: Ports = field(default_factory=Ports)
    state_dir: Path = Path(".lintas/bench/state")
    output_dir: Path = Path(".lintas/bench")
    #: The ladder of arrival rates (cases/s), then `step_factor` steps up to `max_rate`
    #: until a step fails.
    rates: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0, 40.0)
    step_factor: float = 2.0
    max_rate: float = 320.0
    step_seconds: float = 60.0
    #: After the first failing step, bisect this many times between the last rate that
    #: passed and the first that failed (on a grid of `rate_granularity` cases/s): three
    #: from 80 passed and 160 failed try 120, 100 and 90.
    refine_steps: int = 3
    rate_granularity: float = 0.5
    #: Before each step, wait at most this long for the services' consumer lag to be 0.
    settle_seconds: float = 90.0
    #: After a step's last arrival, how long to wait for its cases to complete.
    drain_seconds: float = 30.0
    arrivals: Arrivals = "uniform"
    seed: int = 1
    #: The bar: p99 (both end points) under this, no errors, every case complete.
    threshold_ms: float = 1000.0
    #: Requests in flight at most; an arrival beyond it is counted as an error.
    max_in_flight: int = 512
    #: Cases sent one by one at a low rate first: warm-up, and the store operation count.
    calibration_cases: int = 20
    idle_seconds: float = 10.0
    #: py-spy on every service for this long during a separate load step.
    profile_seconds: float = 30.0
    profile_rate: float | None = None  # default: the highest sustained rate (or the lowest)
    profile: bool = True
    #: Bulk import through `lintas import`.
    import_rows: int = 2000
    import_concurrency: int = 8  # batches in flight, as `lintas import` by default
    #: Every n-th import row is broken on purpose (0: none; 33 is the 3% of issue 3).
    import_bad_every: int = 0
    #: Import the same file a second time: it must create nothing.
    import_rerun: bool = False
    #: Baselines.
    roundtrips: int = 200
    store_cases: int = 100
    minimal_seconds: float = 15.0
    broker_records: int = 30000
    #: Notify's provider throttle for the run (its default, 10/s, would cap SMS at 10/s).
    sms_provider_rate: float = 1000.0
    topic_partitions: int = 6
    #: FerretDB's log level; "debug" logs every SQL statement (to find full-table reads),
    #: at a cost that makes the figures meaningless: for diagnosis only.
    ferretdb_log_level: str = "info"
    #: Stop starting new phases after this many seconds (the phase under way finishes).
    budget_seconds: float = 14 * 60.0
    quick: bool = False
    #: Skip phases (for development): any of pipeline, profile, baselines, import.
    skip: frozenset[str] = frozenset()
    #: Settings given to the services on top of the bench's own (`--service-env`), e.g.
    #: to measure with one feature turned off; printed with the table.
    service_env: tuple[tuple[str, str], ...] = ()

    @property
    def profile_dir(self) -> Path:
        """Where py-spy's files go."""
        return self.output_dir / "profiles"


QUICK = {
    "rates": (2.0, 5.0),
    "step_factor": 2.0,
    "max_rate": 5.0,
    "step_seconds": 8.0,
    "refine_steps": 0,
    "settle_seconds": 30.0,
    "drain_seconds": 15.0,
    "calibration_cases": 6,
    "idle_seconds": 4.0,
    "profile_seconds": 8.0,
    "import_rows": 100,
    "roundtrips": 50,
    "store_cases": 20,
    "minimal_seconds": 6.0,
    "broker_records": 5000,
    "budget_seconds": 8 * 60.0,
}


def _rates(text: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text}") from exc
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError("rates must be positive")
    return rates


def _setting(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.startswith("LINTAS_") or not name.replace("_", "").isalnum():
        raise argparse.ArgumentTypeError(f"not LINTAS_NAME=value: {text}")
    return name, value


def parser() -> argparse.ArgumentParser:
    """The command line of `python -m lintas_bench`."""
    p = argparse.ArgumentParser(
        prog="lintas-bench",
        description=(
            "Start fresh Kafka, FerretDB and the three services on ports 24000-24199, drive "
            "open-loop load through intake's public API, measure raw baselines, memory, bulk "
            "import and profiles; print a table and write JSON. Stops everything it started. "
            "`--render FILE` alone prints the table of a saved run."
        ),
    )
    d = BenchConfig()
    p.add_argument(
        "--quick", action="store_true", help="a few minutes: two short steps, small sizes"
    )
    p.add_argument("--rates", type=_rates, help=f"cases/s ladder (default {d.rates})")
    p.add_argument("--step-factor", type=float, help="multiply the top rate by this to go on")
    p.add_argument("--max-rate", type=float, help="never step above this rate")
    p.add_argument(
        "--step-seconds", type=float, help=f"each step's length (default {d.step_seconds})"
    )
    p.add_argument("--drain-seconds", type=float, help="wait this long for a step's cases")
    p.add_argument("--refine-steps", type=int, help="bisection steps after the first failure")
    p.add_argument("--settle-seconds", type=float, help="wait for consumer lag 0 before a step")
    p.add_argument("--arrivals", choices=["uniform", "poisson"], help="arrival process")
    p.add_argument("--seed", type=int, help="seed of the poisson arrivals")
    p.add_argument("--threshold-ms", type=float, help="p99 bar of a sustained rate")
    p.add_argument("--calibration-cases", type=int)
    p.add_argument("--profile-seconds", type=float)
    p.add_argument("--profile-rate", type=float)
    p.add_argument("--no-profile", action="store_true", help="skip py-spy")
    p.add_argument(
        "--import-rows", type=int, help=f"rows for `lintas import` (default {d.import_rows})"
    )
    p.add_argument(
        "--import-bad-every",
        type=int,
        help="break every n-th import row on purpose (33 = 3%%); checked to be refused, "
        "with the field named, and the rest stored exactly once",
    )
    p.add_argument(
        "--import-rerun",
        action="store_true",
        help="import the same file again afterwards; it must create nothing",
    )
    p.add_argument("--roundtrips", type=int)
    p.add_argument("--store-cases", type=int)
    p.add_argument("--minimal-seconds", type=float)
    p.add_argument("--broker-records", type=int)
    p.add_argument("--sms-provider-rate", type=float, help="notify's provider throttle, per second")
    p.add_argument("--budget-seconds", type=float, help="start no new phase after this")
    p.add_argument(
        "--ferretdb-log-level",
        choices=["debug", "info", "warn", "error"],
        help="debug logs every SQL statement FerretDB runs (diagnosis only: slows it down)",
    )
    p.add_argument(
        "--skip",
        default="",
        help="comma-separated phases to skip: pipeline, profile, baselines, import",
    )
    p.add_argument("--output-dir", type=Path)
    p.add_argument(
        "--service-env",
        type=_setting,
        action="append",
        metavar="LINTAS_NAME=VALUE",
        help="a setting for every service, over the bench's own (repeatable; printed with "
        "the results), e.g. LINTAS_REFERRAL_LOAD_RECONCILE_INTERVAL_SECONDS=3600",
    )
    for name, default in vars(d.ports).items():
        p.add_argument(f"--{name.replace('_', '-')}-port", type=int, default=default)
    return p


def from_args(argv: list[str] | None = None) -> BenchConfig:
    """Build the configuration: defaults, then --quick, then explicit options."""
    command = parser()
    args = command.parse_args(argv)
    values: dict[str, object] = dict(QUICK) if args.quick else {}
    values["quick"] = bool(args.quick)
    for name in (
        "rates",
        "step_factor",
        "max_rate",
        "step_seconds",
        "drain_seconds",
        "refine_steps",
        "settle_seconds",
        "arrivals",
        "seed",
        "threshold_ms",
        "calibration_cases",
        "profile_seconds",
        "profile_rate",
        "import_rows",
        "import_bad_every",
        "roundtrips",
        "store_cases",
        "minimal_seconds",
        "broker_records",
        "sms_provider_rate",
        "budget_seconds",
        "ferretdb_log_level",
        "output_dir",
    ):
        value = getattr(args, name)
        if value is not None:
            values[name] = value
    if args.rates is not None and args.max_rate is None:
        values["max_rate"] = max(max(args.rates), BenchConfig.max_rate)
    if args.no_profile:
        values["profile"] = False
    if args.import_rerun:
        values["import_rerun"] = True
    skip = frozenset(s.strip() for s in args.skip.split(",") if s.strip())
    unknown = skip - {"pipeline", "profile", "baselines", "import"}
    if unknown:
        command.error(f"unknown phases to skip: {sorted(unknown)}")
    values["skip"] = skip
    values["service_env"] = tuple(args.service_env or ())
    ports = Ports(**{name: getattr(args, f"{name}_port") for name in vars(Ports())})
    try:
        ports.check()
    except ValueError as exc:
        command.error(str(exc))
    values["ports"] = ports
    if "output_dir" in values:
        values["state_dir"] = Path(str(values["output_dir"])) / "state"
    return BenchConfig(**values)  # type: ignore[arg-type]
