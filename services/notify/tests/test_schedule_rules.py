"""Quiet hours, the worker's limit and the provider's rate, on an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from lintas_notify.domain.schedule import (
    ProviderRateLimit,
    QuietHours,
    WorkerLimit,
    worker_zone,
)

pytestmark = pytest.mark.unit
JAKARTA = ZoneInfo("Asia/Jakarta")


def utc(hour: int, minute: int = 0, day: int = 16) -> datetime:
    return datetime(2026, 9, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("country", "zone", "expected"),
    [
        ("ID", None, "Asia/Jakarta"),  # WIB where nothing more is known
        ("ID", "Asia/Makassar", "Asia/Makassar"),  # WITA
        ("ID", "Asia/Jayapura", "Asia/Jayapura"),  # WIT
        ("HK", None, "Asia/Hong_Kong"),
        ("SG", None, "Asia/Singapore"),
        ("SG", "Not/AZone", "Asia/Singapore"),
        ("FR", None, "Asia/Jakarta"),
    ],
)
def test_the_workers_zone(country: str, zone: str | None, expected: str) -> None:
    assert str(worker_zone(country, zone)) == expected


def test_quiet_hours_defer_to_seven_in_her_local_time() -> None:
    quiet = QuietHours()
    assert quiet.next_allowed(utc(13, 59), JAKARTA) == utc(13, 59)  # 20:59 WIB
    assert quiet.next_allowed(utc(14, 0), JAKARTA) == utc(0, 0, day=17)  # 21:00 -> 07:00
    assert quiet.next_allowed(utc(23, 30), JAKARTA) == utc(0, 0, day=17)  # 06:30 -> 07:00
    assert quiet.next_allowed(utc(0, 0, day=17), JAKARTA) == utc(0, 0, day=17)


def test_the_same_moment_is_quiet_in_papua_but_not_in_java() -> None:
    quiet, now = QuietHours(), utc(12, 30)  # 19:30 WIB, 21:30 WIT
    assert quiet.next_allowed(now, JAKARTA) == now
    assert quiet.next_allowed(now, ZoneInfo("Asia/Jayapura")) == utc(22, 0)  # 07:00 WIT


def test_quiet_hours_in_hong_kong_and_configurable() -> None:
    hk = ZoneInfo("Asia/Hong_Kong")
    assert QuietHours().next_allowed(utc(13, 30), hk) == utc(23, 0)  # 21:30 -> 07:00 HKT
    late = QuietHours(time(22, 0), time(8, 0))
    assert late.next_allowed(utc(13, 30), hk) == utc(13, 30)
    assert late.next_allowed(utc(23, 30), hk) == utc(0, 0, day=17)  # 07:30 -> 08:00
    assert QuietHours(time(0, 0), time(0, 0)).next_allowed(utc(15), hk) == utc(15)  # off


def test_worker_limit_defers_until_the_oldest_ages_out() -> None:
    limit = WorkerLimit(per_window=2)
    now = utc(10)
    assert limit.next_allowed(now, [utc(9)]) == now
    assert limit.next_allowed(now, [utc(8), utc(9)]) == utc(8, day=17)
    assert limit.next_allowed(now, [utc(8, day=15), utc(9)]) == now  # older than a day


def test_provider_rate_defers_rather_than_drops() -> None:
    rate = ProviderRateLimit(per_second=2)
    now = utc(10)
    assert rate.reserve(now) == now
    assert rate.reserve(now) == now  # a burst of one second's worth
    assert rate.reserve(now) == now + timedelta(seconds=0.5)
    assert rate.reserve(now + timedelta(seconds=0.5)) == now + timedelta(seconds=0.5)
    assert rate.reserve(now + timedelta(seconds=0.5)) == now + timedelta(seconds=1)
