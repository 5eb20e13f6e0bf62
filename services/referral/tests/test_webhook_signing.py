"""Webhook signatures, the URL rule and the retry schedule, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from lintas_referral.domain.webhooks import RetrySchedule, WebhookUrlError, check_url, sign, verify

pytestmark = pytest.mark.unit
T0 = datetime(2026, 9, 16, tzinfo=UTC)


def test_signature_round_trip_and_rejections() -> None:
    header = sign("s3cret", 1_000_000, b'{"a":1}')
    assert verify("s3cret", header, b'{"a":1}', now=1_000_100)
    assert not verify("s3cret", header, b'{"a":2}', now=1_000_100)
    assert not verify("other", header, b'{"a":1}', now=1_000_100)
    assert not verify("s3cret", header, b'{"a":1}', now=1_000_301)
    assert not verify("s3cret", "garbage", b'{"a":1}', now=1_000_000)


def test_https_only_except_localhost_on_dev() -> None:
    assert check_url("https://lawyer.example.hk/hook", "production")
    assert check_url("http://127.0.0.1:9999/hook", "dev")
    for url, env in (
        ("http://127.0.0.1:9999/hook", "production"),
        ("http://lawyer.example.hk/hook", "dev"),
        ("ftp://x/hook", "dev"),
    ):
        with pytest.raises(WebhookUrlError):
            check_url(url, env)


def test_backoff_doubles_and_gives_up_after_24_hours() -> None:
    schedule = RetrySchedule()
    assert schedule.next_attempt(T0, 1, T0) == T0 + timedelta(seconds=30)
    assert schedule.next_attempt(T0, 2, T0) == T0 + timedelta(seconds=60)
    assert schedule.next_attempt(T0, 20, T0) == T0 + timedelta(hours=2)
    assert schedule.next_attempt(T0, 20, T0 + timedelta(hours=23)) is None
