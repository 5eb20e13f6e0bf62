"""Webhook signatures, the URL rule and the retry schedule, as pure functions."""

from __future__ import annotations

import ipaddress
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from lintas_referral.domain.webhooks import (
    RetrySchedule,
    WebhookUrlError,
    address_refused,
    check_addresses,
    check_url,
    literal_address,
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
    assert check_url("https://lawyer.example.hk/hook", False)
    assert check_url("http://127.0.0.1:9999/hook", True)
    for url, loopback in (
        ("http://127.0.0.1:9999/hook", False),
        ("http://lawyer.example.hk/hook", True),
        ("ftp://x/hook", True),
        ("https://", True),
        ("https://a b/hook", True),
        ("https://[::1/hook", True),
    ):
        with pytest.raises(WebhookUrlError):
            check_url(url, loopback)


def test_backoff_doubles_and_gives_up_after_24_hours() -> None:
    longest = RetrySchedule(jitter=lambda: 1.0)
    assert longest.next_attempt(T0, 1, T0) == T0 + timedelta(seconds=30)
    assert longest.next_attempt(T0, 2, T0) == T0 + timedelta(seconds=60)
    assert longest.next_attempt(T0, 20, T0) == T0 + timedelta(hours=2)
    assert longest.next_attempt(T0, 20, T0 + timedelta(hours=23)) is None
    shortest = RetrySchedule(jitter=lambda: 0.0)
    assert shortest.next_attempt(T0, 2, T0) == T0 + timedelta(seconds=30)
    assert shortest.next_attempt(T0, 20, T0) == T0 + timedelta(hours=1)


def test_deliveries_that_failed_together_are_not_retried_in_step() -> None:
    schedule = RetrySchedule()
    retries = {schedule.next_attempt(T0, 3, T0) for _ in range(20)}
    assert all(
        T0 + timedelta(seconds=60) <= at <= T0 + timedelta(seconds=120)
        for at in retries
        if at is not None
    )
    assert len(retries) > 10


def test_the_documented_url_pattern_is_the_rule() -> None:
    assert re.search(url_pattern(False), "https://lawyer.example.hk:8443/hook?x=1")
    assert not re.search(url_pattern(False), "http://127.0.0.1:9999/hook")
    assert re.search(url_pattern(True), "http://127.0.0.1:9999/hook")


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "169.254.169.254",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",
        "100.127.255.254",
        "0.0.0.0",  # noqa: S104 (an address refused, not bound)
        "224.0.0.251",
        "233.252.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    ],
)
def test_internal_addresses_are_refused(address: str) -> None:
    assert address_refused(ipaddress.ip_address(address))


def test_public_addresses_pass_and_loopback_only_by_setting() -> None:
    for public in ("93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"):
        assert not address_refused(ipaddress.ip_address(public))
    assert not address_refused(ipaddress.ip_address("127.0.0.1"), allow_loopback=True)
    assert not address_refused(ipaddress.ip_address("::1"), allow_loopback=True)
    assert address_refused(ipaddress.ip_address("10.0.0.1"), allow_loopback=True)
    assert address_refused(ipaddress.ip_address("169.254.169.254"), allow_loopback=True)


def test_addresses_in_any_spelling_are_read_as_the_resolver_would() -> None:
    for spelling in ("2130706433", "0x7f000001", "0177.0.0.1", "127.1", "[::1]"):
        assert literal_address(spelling) is not None
        assert address_refused(literal_address(spelling))  # type: ignore[arg-type]
    assert literal_address("partner.example.org") is None


def test_every_answer_of_a_name_must_be_public() -> None:
    assert str(check_addresses("h", ["93.184.216.34"])) == "93.184.216.34"
    for answers in ([], ["10.0.0.1"], ["93.184.216.34", "fd00::1"]):
        with pytest.raises(WebhookUrlError):
            check_addresses("h", answers)
