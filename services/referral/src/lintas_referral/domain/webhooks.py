"""Signed webhooks: the signatures, the URL rule and the retry schedule. Pure.

Deliveries follow the Standard Webhooks specification (https://www.standardwebhooks.com):
every POST carries

- `webhook-id`: the delivery's id, the same on every retry (receivers deduplicate on it);
- `webhook-timestamp`: unix seconds when this attempt was signed;
- `webhook-signature`: `v1,<base64 HMAC-SHA256 over "<id>.<timestamp>.<body>">`, keyed
  with the base64-decoded part of the partner's `whsec_…` secret.

so any Standard Webhooks library verifies them. The body is the event as a CloudEvent in
structured mode (`Content-Type: application/cloudevents+json`).

Deprecation path: partners that built against the older `X-Lintas-Signature` header
(`t=<unix seconds>,v1=<hex HMAC-SHA256 over "<t>.<body>" with the whole secret string>`)
keep getting it for one more release, chosen per partner by the registration's
`signature_scheme`: `standard` (new registrations' default), `both` (both sets of headers,
to switch verifiers without a gap), or `lintas-v1` (the old header alone; what a
registration made before the scheme existed gets).

Secret rotation: a partner may replace its secret with an overlap window. Until the
window ends each delivery is signed with the new secret and the old one: two `v1,`
signatures, space-separated, in `webhook-signature` (as Standard Webhooks provides for),
and two `v1=` parts in `X-Lintas-Signature`; a receiver verifies with either secret.
After the window only the new one signs.

Receivers refuse a timestamp more than 5 minutes from their clock. Failed deliveries are
retried with exponential backoff for up to 24 hours, on a stored schedule:
`next_attempt_at` says when, so nothing depends on in-memory timers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import random
import re
import secrets
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, get_args
from urllib.parse import urlsplit

from lintas_shared.backoff import Jitter, backoff_seconds

#: Standard Webhooks headers.
WEBHOOK_ID_HEADER: Final = "webhook-id"
WEBHOOK_TIMESTAMP_HEADER: Final = "webhook-timestamp"
WEBHOOK_SIGNATURE_HEADER: Final = "webhook-signature"
#: The deprecated Lintas headers (`lintas-v1` and `both` schemes only).
SIGNATURE_HEADER: Final = "X-Lintas-Signature"
EVENT_ID_HEADER: Final = "X-Lintas-Event-Id"
DELIVERY_ID_HEADER: Final = "X-Lintas-Delivery-Id"
CLOUDEVENTS_JSON: Final = "application/cloudevents+json"
SECRET_PREFIX: Final = "whsec_"  # noqa: S105 (the prefix, not a secret)
TOLERANCE = timedelta(minutes=5)
#: How long the old secret keeps signing after a rotation, unless the partner asks
#: otherwise, and the longest it may ask for.
DEFAULT_ROTATION_OVERLAP = timedelta(hours=24)
MAX_ROTATION_OVERLAP = timedelta(days=7)

SignatureScheme = Literal["standard", "both", "lintas-v1"]
SIGNATURE_SCHEMES: Final[tuple[str, ...]] = get_args(SignatureScheme)
#: What a new registration gets unless it asks for another.
DEFAULT_SCHEME: Final[SignatureScheme] = "standard"
#: What a registration stored before schemes existed gets: what it was built against.
LEGACY_SCHEME: Final[SignatureScheme] = "lintas-v1"


class WebhookUrlError(ValueError):
    """The URL cannot receive webhooks in this environment."""


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in standard base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret: its base64 part, decoded (as the Standard
    Webhooks libraries do)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded + "==")
    except (binascii.Error, ValueError):
        return encoded.encode()


def sign_standard(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for `body` sent as `msg_id` at `timestamp`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verify_standard(
    secret: str,
    headers: dict[str, str],
    body: bytes,
    now: int,
    tolerance: timedelta = TOLERANCE,
) -> bool:
    """What a receiver does: a fresh timestamp and a matching `v1` signature."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get(WEBHOOK_ID_HEADER, "")
    try:
        timestamp = int(lowered.get(WEBHOOK_TIMESTAMP_HEADER, ""))
    except ValueError:
        return False
    if not msg_id or abs(now - timestamp) > tolerance.total_seconds():
        return False
    expected = sign_standard(secret, msg_id, timestamp, body)
    return any(
        hmac.compare_digest(expected, candidate)
        for candidate in lowered.get(WEBHOOK_SIGNATURE_HEADER, "").split()
    )


def sign(secret: str, timestamp: int, body: bytes, *also: str) -> str:
    """The deprecated `X-Lintas-Signature` value for `body` sent at `timestamp`: one
    `v1=` part per secret (`also`: the old secrets of a rotation's overlap window)."""
    macs = [
        hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        for key in (secret, *also)
    ]
    return f"t={timestamp}," + ",".join(f"v1={mac}" for mac in macs)


def verify(
    secret: str, header: str, body: bytes, now: int, tolerance: timedelta = TOLERANCE
) -> bool:
    """What a receiver of the deprecated header does: the timestamp is fresh and one of
    the `v1=` signatures matches."""
    parts = [tuple(item.split("=", 1)) for item in header.split(",") if "=" in item]
    try:
        timestamp = int(next(value for name, value in parts if name == "t"))
    except (StopIteration, ValueError):
        return False
    if abs(now - timestamp) > tolerance.total_seconds():
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, value) for name, value in parts if name == "v1")


def signature_headers(
    scheme: SignatureScheme,
    secret: str,
    *,
    delivery_id: str,
    event_id: str,
    timestamp: int,
    body: bytes,
    also: Sequence[str] = (),
) -> dict[str, str]:
    """Every header of one delivery attempt under the partner's scheme, signed with
    `secret` and, during a rotation's overlap window, each of `also` (the old secret)."""
    headers = {"Content-Type": CLOUDEVENTS_JSON}
    if scheme in ("standard", "both"):
        signatures = " ".join(
            sign_standard(key, delivery_id, timestamp, body) for key in (secret, *also)
        )
        headers |= {
            WEBHOOK_ID_HEADER: delivery_id,
            WEBHOOK_TIMESTAMP_HEADER: str(timestamp),
            WEBHOOK_SIGNATURE_HEADER: signatures,
        }
    if scheme in ("lintas-v1", "both"):
        headers |= {
            SIGNATURE_HEADER: sign(secret, timestamp, body, *also),
            EVENT_ID_HEADER: event_id,
            DELIVERY_ID_HEADER: delivery_id,
        }
    return headers


_HOST: Final = (
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_PORT_AND_REST: Final = r"(?::[0-9]{1,5})?(?:[/?#][!-~]*)?"
HTTPS_URL: Final = rf"https://{_HOST}{_PORT_AND_REST}"
DEV_URL: Final = rf"http://127\.0\.0\.1{_PORT_AND_REST}"


def url_pattern(allow_loopback: bool) -> str:
    """The pattern a webhook URL must match, as the OpenAPI document states it and
    `check_url` applies it (searched as JSON Schema validators do). Plain http to
    127.0.0.1 only with `allow_loopback` (the dev stack's explicit setting)."""
    if allow_loopback:
        return rf"^(?:{HTTPS_URL}|{DEV_URL})$"
    return rf"^{HTTPS_URL}$"


def check_url(url: str, allow_loopback: bool = False) -> str:
    """HTTPS everywhere; plain http only to 127.0.0.1 when loopback receivers are allowed
    (the dev stack). Returns the URL to store. The address rule is `check_address`."""
    if re.search(url_pattern(allow_loopback), url):
        return url.removesuffix("\n")
    raise WebhookUrlError("url must be https:// (http://127.0.0.1 only on a dev stack)")


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_CGNAT: Final = ipaddress.IPv4Network("100.64.0.0/10")


@dataclass(frozen=True)
class Endpoint:
    """Where a webhook URL points: scheme, host as written, port."""

    scheme: str
    host: str
    port: int


def endpoint(url: str) -> Endpoint:
    """The scheme, host and port of a URL that passed `check_url` (`WebhookUrlError` if
    the port is out of range)."""
    parts = urlsplit(url.removesuffix("\n"))
    try:
        port = parts.port
    except ValueError:  # the pattern allows five digits: 99999 is no port
        port = 0
    if port == 0:
        raise WebhookUrlError("url port must be between 1 and 65535")
    host = parts.hostname or ""
    return Endpoint(parts.scheme, host, port or (443 if parts.scheme == "https" else 80))


def literal_address(host: str) -> IPAddress | None:
    """The address a host names by itself, in any form a resolver would read: dotted
    quad, IPv6, or the integer, hex, octal and short forms (`2130706433`, `0x7f.1`,
    `127.1`) that name 127.0.0.1 to the C library. None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _embedded(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refused(address: IPAddress, allow_loopback: bool = False) -> bool:
    """Whether a webhook may not be sent to `address`: anything but a public unicast
    address (loopback, link-local, private, CGNAT 100.64/10, multicast, unspecified,
    reserved, IPv6 unique-local), also inside IPv4-mapped, 6to4, Teredo or NAT64 IPv6.
    With `allow_loopback` (dev stack only), loopback is allowed."""
    inner = _embedded(address)
    if inner is not None and address_refused(inner, allow_loopback):
        return True
    if address.is_loopback or (inner is not None and inner.is_loopback):
        return not allow_loopback
    return (
        not address.is_global
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT)
    )


def check_addresses(host: str, addresses: Iterable[str], allow_loopback: bool = False) -> IPAddress:
    """The address to connect to, from what `host` resolved to: refused unless every one
    is allowed (a name with a private answer among public ones is refused as a whole)."""
    parsed = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
    if not parsed:
        raise WebhookUrlError("url host does not resolve")
    if any(address_refused(a, allow_loopback) for a in parsed):
        raise WebhookUrlError(
            "url must point to a public address (not loopback, link-local, private, "
            "shared, multicast or reserved)"
        )
    return parsed[0]


@dataclass(frozen=True)
class RetrySchedule:
    """Exponential backoff between attempts, giving up 24 hours after the first."""

    first_delay: timedelta = timedelta(seconds=30)
    max_delay: timedelta = timedelta(hours=2)
    give_up_after: timedelta = timedelta(hours=24)
    #: Spreads the retries of deliveries that failed together (a partner was down).
    jitter: Jitter = random.random

    def next_attempt(self, created_at: datetime, attempts: int, now: datetime) -> datetime | None:
        """When to try again after `attempts` failures (a jittered backoff), or None when
        it is time to give up."""
        seconds = backoff_seconds(
            self.first_delay.total_seconds(),
            attempts,
            self.max_delay.total_seconds(),
            self.jitter,
        )
        at = now + timedelta(seconds=seconds)
        return at if at <= created_at + self.give_up_after else None
