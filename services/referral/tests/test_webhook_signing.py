"""Webhook signatures, the URL rule and the retry schedule, as pure functions."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from lintas_referral.domain.webhooks import (
    RetrySchedule,
    WebhookUrlError,
    check_url,
    new_secret,
    sign,
    sign_standard,
    signature_headers,
    url_pattern,
    verify,
    verify_standard,
)
from standardwebhooks.webhooks import Webhook

pytestmark = pytest.mark.unit
T0 = datetime(2026, 9, 16, tzinfo=UTC)


def test_signature_round_trip_and_rejections() -> None:
    header = sign("s3cret", 1_000_000, b'{"a":1}')
    assert verify("s3cret", header, b'{"a":1}', now=1_000_100)
    assert not verify("s3cret", header, b'{"a":2}', now=1_000_100)
    assert not verify("other", header, b'{"a":1}', now=1_000_100)
    assert not verify("s3cret", header, b'{"a":1}', now=1_000_301)
    assert not verify("s3cret", "garbage", b'{"a":1}', now=1_000_000)


def test_standard_signature_is_what_the_standardwebhooks_library_verifies() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    body = b'{"specversion":"1.0"}'
    now = int(time.time())
    headers = signature_headers(
        "standard", secret, delivery_id="dlv-1", event_id="evt-1", timestamp=now, body=body
    )
    assert headers["webhook-signature"] == sign_standard(secret, "dlv-1", now, body)
    assert headers["Content-Type"] == "application/cloudevents+json"
    assert set(headers) == {"Content-Type", "webhook-id", "webhook-timestamp", "webhook-signature"}
    assert Webhook(secret).verify(body, headers) == {"specversion": "1.0"}
    assert verify_standard(secret, headers, body, now=now)
    assert not verify_standard(secret, headers, body + b" ", now=now)
    assert not verify_standard(new_secret(), headers, body, now=now)
    assert not verify_standard(secret, headers, body, now=now + 301)


def test_both_schemes_send_both_headers_from_one_secret() -> None:
    secret = new_secret()
    body = b"{}"
    headers = signature_headers(
        "both", secret, delivery_id="dlv-1", event_id="evt-1", timestamp=1_000_000, body=body
    )
    assert verify(secret, headers["X-Lintas-Signature"], body, now=1_000_000)
    assert verify_standard(secret, headers, body, now=1_000_000)
    old = signature_headers(
        "lintas-v1", secret, delivery_id="dlv-1", event_id="evt-1", timestamp=1, body=body
    )
    assert "webhook-signature" not in old
    assert old["X-Lintas-Event-Id"] == "evt-1"


def test_https_only_except_localhost_on_dev() -> None:
    assert check_url("https://lawyer.example.hk/hook", "production")
    assert check_url("http://127.0.0.1:9999/hook", "dev")
    for url, env in (
        ("http://127.0.0.1:9999/hook", "production"),
        ("http://lawyer.example.hk/hook", "dev"),
        ("ftp://x/hook", "dev"),
        ("https://", "dev"),
        ("https://a b/hook", "dev"),
        ("https://[::1/hook", "dev"),
    ):
        with pytest.raises(WebhookUrlError):
            check_url(url, env)


def test_backoff_doubles_and_gives_up_after_24_hours() -> None:
    schedule = RetrySchedule()
    assert schedule.next_attempt(T0, 1, T0) == T0 + timedelta(seconds=30)
    assert schedule.next_attempt(T0, 2, T0) == T0 + timedelta(seconds=60)
    assert schedule.next_attempt(T0, 20, T0) == T0 + timedelta(hours=2)
    assert schedule.next_attempt(T0, 20, T0 + timedelta(hours=23)) is None


def test_the_documented_url_pattern_is_the_rule() -> None:
    assert re.search(url_pattern("production"), "https://lawyer.example.hk:8443/hook?x=1")
    assert not re.search(url_pattern("production"), "http://127.0.0.1:9999/hook")
    assert re.search(url_pattern("dev"), "http://127.0.0.1:9999/hook")
