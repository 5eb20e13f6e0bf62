"""Signed webhooks: the signature, the URL rule, and the retry schedule. Pure.

Every delivery is a POST whose `X-Lintas-Signature` header is
`t=<unix seconds>,v1=<hex HMAC-SHA256 over "<t>.<body>" with the partner's secret>`.
Receivers recompute it and refuse a timestamp older than 5 minutes (a replayed request).
Failed deliveries are retried with exponential backoff for up to 24 hours, on a stored
schedule: `next_attempt_at` says when, so nothing depends on in-memory timers.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Lintas-Signature"
EVENT_ID_HEADER = "X-Lintas-Event-Id"
TOLERANCE = timedelta(minutes=5)


class WebhookUrlError(ValueError):
    """The URL cannot receive webhooks in this environment."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str, header: str, body: bytes, now: int, tolerance: timedelta = TOLERANCE
) -> bool:
    """What a receiver does: the signature matches and the timestamp is fresh."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance.total_seconds():
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def check_url(url: str, environment: str) -> str:
    """HTTPS everywhere; plain http only to 127.0.0.1 on a development stack."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname == "127.0.0.1" and environment == "dev":
        return url
    raise WebhookUrlError("url must be https:// (http://127.0.0.1 only on a dev stack)")


@dataclass(frozen=True)
class RetrySchedule:
    """Exponential backoff between attempts, giving up 24 hours after the first."""

    first_delay: timedelta = timedelta(seconds=30)
    max_delay: timedelta = timedelta(hours=2)
    give_up_after: timedelta = timedelta(hours=24)

    def next_attempt(self, created_at: datetime, attempts: int, now: datetime) -> datetime | None:
        """When to try again after `attempts` failures, or None when it is time to give up."""
        delay = min(self.first_delay * 2 ** (attempts - 1), self.max_delay)
        at = now + delay
        return at if at <= created_at + self.give_up_after else None
