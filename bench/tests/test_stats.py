"""The benchmark's pure parts: percentiles, schedules, the sustained-rate rule, parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lintas_bench.baselines import parse_producer_performance
from lintas_bench.config import Ports, from_args
from lintas_bench.profiling import package_of, summarise_speedscope
from lintas_bench.stats import (
    StepVerdict,
    bisect_rate,
    highest_sustained,
    judge_step,
    next_rates,
    open_loop_schedule,
    percentile,
    summarise,
)
from lintas_bench.storeops import full_table_reads, per_case

pytestmark = pytest.mark.unit


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="within"):
        percentile(values, 101)


def test_summary_is_in_milliseconds() -> None:
    summary = summarise([0.010, 0.020, 0.030])
    assert summary.count == 3
    assert summary.p50_ms == 20.0
    assert summary.max_ms == 30.0
    assert summary.mean_ms == 20.0
    assert summarise([]).p99_ms is None


def test_uniform_schedule_is_evenly_spaced_and_within_the_step() -> None:
    times = open_loop_schedule(4.0, 2.0)
    assert times == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert len(open_loop_schedule(2.5, 3.0)) == 8  # 7.5 arrivals: the last one at 2.8 s
    assert all(t < 3.0 for t in open_loop_schedule(2.5, 3.0))


def test_poisson_schedule_is_seeded_and_about_the_rate() -> None:
    first = open_loop_schedule(50.0, 20.0, "poisson", seed=7)
    assert first == open_loop_schedule(50.0, 20.0, "poisson", seed=7)
    assert first != open_loop_schedule(50.0, 20.0, "poisson", seed=8)
    assert first == sorted(first)
    assert all(0.0 <= t < 20.0 for t in first)
    assert 800 < len(first) < 1200


def test_schedule_refuses_a_non_positive_rate() -> None:
    with pytest.raises(ValueError, match="positive"):
        open_loop_schedule(0.0, 10.0)


def _judge(**changes: object) -> StepVerdict:
    args: dict[str, object] = {
        "rate": 10.0,
        "requested": 300,
        "accepted": 300,
        "errors": 0,
        "missing": 0,
        "p99_ms": [400.0, 600.0],
        "threshold_ms": 1000.0,
        "duration_s": 30.0,
        "required_duration_s": 30.0,
    }
    args.update(changes)
    return judge_step(**args)  # type: ignore[arg-type]


def test_a_step_is_sustained_only_when_everything_holds() -> None:
    assert _judge().sustained
    assert _judge().reasons == ()
    assert not _judge(p99_ms=[400.0, 1000.0]).sustained  # the bar is strict
    assert not _judge(errors=1, accepted=299).sustained
    assert not _judge(missing=2).sustained
    assert not _judge(p99_ms=[None, 10.0]).sustained
    assert not _judge(duration_s=20.0).sustained
    assert not _judge(requested=0, accepted=0).sustained
    assert "3 cases incomplete" in _judge(missing=3).reasons
    assert not _judge(aborted=True).sustained


def test_highest_sustained_stops_at_the_first_failure() -> None:
    def verdict(rate: float, ok: bool) -> StepVerdict:
        return StepVerdict(rate, ok, () if ok else ("slow",))

    assert highest_sustained([verdict(2, True), verdict(5, True), verdict(10, False)]) == 5
    assert highest_sustained([verdict(2, True), verdict(5, False), verdict(10, True)]) == 2
    assert highest_sustained([verdict(2, False)]) is None
    assert highest_sustained([]) is None


def test_rate_ladder_steps_up_by_a_factor_to_the_limit() -> None:
    assert next_rates([5, 2, 10], 2.0, 40.0) == [2, 5, 10, 20, 40]
    assert next_rates([2, 5], 2.0, 5.0) == [2, 5]
    assert next_rates([2, 50], 2.0, 10.0) == [2]
    with pytest.raises(ValueError, match="above 1"):
        next_rates([2], 1.0, 10.0)


def test_store_commands_per_case_subtract_the_idle_rate() -> None:
    work = {"insert": 50, "find": 130, "update": 80}
    idle = {"find": 10}
    assert per_case(work, 20.0, idle, 10.0, 10) == {"find": 11.0, "insert": 5.0, "update": 8.0}
    assert per_case(work, 20.0, idle, 10.0, 0) == {}


def test_producer_performance_summary_line_is_parsed() -> None:
    output = (
        "5031 records sent, 1006.2 records/sec (1.44 MB/sec), 2568.2 ms avg latency, "
        "3651.0 ms max latency.\n"
        "20000 records sent, 2180.549498 records/sec (3.12 MB/sec), 4533.37 ms avg latency, "
        "6344.00 ms max latency, 4764 ms 50th, 6277 ms 95th, 6328 ms 99th, 6342 ms 99.9th.\n"
    )
    parsed = parse_producer_performance(output)
    assert parsed is not None
    assert parsed["records"] == 20000
    assert parsed["rps"] == pytest.approx(2180.549498)
    assert parsed["p99"] == 6328
    assert parse_producer_performance("nothing") is None


def test_speedscope_summary_counts_leaf_and_inclusive_frames(tmp_path: Path) -> None:
    site = "/v/lib/python3.11/site-packages"
    frames = [
        {"name": "run", "file": "/x/lib/python3.11/asyncio/base_events.py", "line": 1},
        {"name": "handle", "file": "/w/services/intake/src/lintas_intake/handlers.py", "line": 2},
        {"name": "validate", "file": f"{site}/pydantic/main.py", "line": 3},
        {"name": "insert", "file": f"{site}/pymongo/asynchronous/collection.py", "line": 4},
        {"name": "EpollSelector.select", "file": "/x/lib/python3.11/selectors.py", "line": 5},
    ]
    profile = {
        "type": "sampled",
        "samples": [[0, 1, 2], [0, 1, 2], [0, 1, 3], [0], [0, 4]],
        "weights": [0.01, 0.01, 0.01, 0.01, 0.01],
    }
    path = tmp_path / "intake.speedscope.json"
    path.write_text(json.dumps({"shared": {"frames": frames}, "profiles": [profile]}))
    summary = summarise_speedscope("intake", path)
    assert summary.samples == 4
    assert summary.waiting_samples == 1  # waiting in epoll is no work
    assert summary.self_by_package[0].name == "pydantic"
    assert summary.self_by_package[0].percent == 50.0
    inclusive = {s.name: s.percent for s in summary.inclusive_by_function}
    assert inclusive["handle (lintas_intake.handlers)"] == 75.0
    assert "run (asyncio.base_events)" not in inclusive  # on every sample: scaffolding
    assert [s.name for s in summary.inclusive_lintas] == ["handle (lintas_intake.handlers)"]


def test_package_names_come_from_the_file_path() -> None:
    assert package_of("/v/lib/python3.11/site-packages/pymongo/x.py") == "pymongo"
    assert package_of("/v/lib/python3.11/site-packages/six.py") == "six"
    assert package_of("/w/shared/src/lintas_shared/outbox.py") == "lintas_shared"
    assert package_of("/p/lib/python3.11/json/encoder.py") == "stdlib json"
    assert package_of("<frozen importlib._bootstrap>") == "python (frozen)"


def test_ports_stay_in_the_benchmark_range() -> None:
    Ports().check()
    with pytest.raises(ValueError, match="outside"):
        Ports(kafka=9092).check()
    with pytest.raises(ValueError, match="differ"):
        Ports(intake=24081).check()
    with pytest.raises(SystemExit):
        from_args(["--kafka-port", "9092"])


def test_quick_mode_and_explicit_options() -> None:
    quick = from_args(["--quick", "--import-rows", "10"])
    assert quick.quick
    assert quick.rates == (2.0, 5.0)
    assert quick.import_rows == 10
    assert from_args(["--rates", "1,3"]).rates == (1.0, 3.0)
    assert from_args(["--skip", "import,profile"]).skip == {"import", "profile"}


def test_bisection_between_the_last_pass_and_the_first_failure() -> None:
    assert bisect_rate(2.0, 5.0) == 3.5
    assert bisect_rate(2.0, 3.5) == 3.0  # 2.75 rounds to the half-case grid
    assert bisect_rate(3.0, 3.5) is None
    assert bisect_rate(None, 2.0) == 1.0
    assert bisect_rate(None, 0.5) is None
    assert bisect_rate(20.0, 40.0, granularity=1.0) == 30.0


def test_full_table_reads_are_selects_without_where_per_collection() -> None:
    log = [
        'level=DEBUG msg=">>> SELECT  _ferretdb_sjson FROM \\"cases_fd985966\\"" '
        "name=sqlite name=lintas_intake args=[]",
        'level=DEBUG msg=">>> SELECT  _ferretdb_sjson FROM \\"cases_fd985966\\" '
        "WHERE _ferretdb_sjson->'$._id' = ?\" name=sqlite name=lintas_intake args=[x]",
        'level=DEBUG msg=">>> SELECT  _ferretdb_sjson FROM \\"cases_fd985966\\"" '
        "name=sqlite name=lintas_intake args=[]",
        'level=DEBUG msg=">>> UPDATE \\"cases_fd985966\\" SET x" name=sqlite',
        'level=DEBUG msg="<<< SELECT  _ferretdb_sjson FROM \\"messages_0a0b0c0d\\"" name=x',
    ]
    assert full_table_reads(log) == {"lintas_intake.cases": 2}
