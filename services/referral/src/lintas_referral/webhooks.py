"""Webhook use cases: register a URL, turn referral events into deliveries, deliver them.

Deliveries are created by a consumer of `lintas.referrals.v1` (each event's single,
idempotent insert; no dual write) and sent by the scheduler, which records every attempt
in the delivery log and schedules the next from the stored retry schedule.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from lintas_shared.crypto import MasterKeys, sealed_key_id
from lintas_shared.envelope import CloudEvent
from lintas_shared.ids import deterministic_id
from lintas_shared.logging import get_logger
from lintas_shared.mongo import Document

from lintas_referral.domain.webhooks import (
    DEFAULT_ROTATION_OVERLAP,
    DEFAULT_SCHEME,
    LEGACY_SCHEME,
    MAX_ROTATION_OVERLAP,
    SIGNATURE_SCHEMES,
    IPAddress,
    RetrySchedule,
    SignatureScheme,
    WebhookUrlError,
    check_addresses,
    check_url,
    endpoint,
    literal_address,
    new_secret,
    signature_headers,
)
from lintas_referral.handlers import Clock, RoutingRepository, utc_now

log = get_logger(__name__)


@dataclass(frozen=True)
class Registration:
    """A partner's webhook: where to POST, the sealed secret, and how to sign."""

    url: str
    sealed_secret: str
    #: A registration stored before schemes existed has none: it gets what it was
    #: built against, the deprecated `X-Lintas-Signature`.
    signature_scheme: SignatureScheme = LEGACY_SCHEME
    #: The secret a rotation replaced, sealed: it still signs until `previous_until`.
    previous_sealed_secret: str | None = None
    previous_until: datetime | None = None

    def overlapping(self, now: datetime) -> bool:
        """Whether the replaced secret still signs at `now` (the overlap window)."""
        return (
            self.previous_sealed_secret is not None
            and self.previous_until is not None
            and now < self.previous_until
        )


def scheme_of(value: object) -> SignatureScheme:
    """A stored scheme, or the legacy one for a registration that has none."""
    for scheme in SIGNATURE_SCHEMES:
        if value == scheme:
            return scheme  # type: ignore[return-value]
    return LEGACY_SCHEME


class WebhookDirectory(Protocol):
    """Where partners' webhook registrations live."""

    async def set_webhook(self, partner_id: str, registration: Registration) -> bool:
        """Register a URL, sealed secret and signature scheme."""
        ...

    async def webhook(self, partner_id: str) -> Registration | None:
        """The registration, if any."""
        ...

    async def has_webhook(self, partner_id: str, referral_id: str | None = None) -> bool:
        """Whether the partner registered a webhook: whether its referral events are
        queued for delivery. A "yes" may come from a copy a few seconds old (each delivery
        reads the registration itself); a "no" is read, unless it is the answer read a
        few seconds ago when `referral_id` was counted in the partner's load."""
        ...

    async def replace_webhook(
        self, partner_id: str, expected: Registration, registration: Registration
    ) -> bool:
        """Replace the registration only if it is still `expected`; False otherwise."""
        ...


class DeliveryStore(Protocol):
    """The delivery log and schedule."""

    async def create(self, delivery: Document) -> bool:
        """Insert a new delivery; False if it exists."""
        ...

    async def due(self, now: datetime, limit: int = 50) -> list[Document]:
        """Pending deliveries due now."""
        ...

    async def record_attempt(
        self, delivery_id: str, attempts_read: int, attempt: Document, changes: dict[str, Any]
    ) -> bool:
        """Record an attempt if nobody else did."""
        ...


class Sender(Protocol):
    """Sends one HTTP POST to `address` (already checked) as if to `url`: no second
    lookup of the URL's host. Returns the status code (raises on a network failure)."""

    async def post(
        self, url: str, address: IPAddress, body: bytes, headers: dict[str, str]
    ) -> int: ...


class Resolver(Protocol):
    """Resolves a host name to its addresses (none when it does not resolve)."""

    async def resolve(self, host: str, port: int) -> list[str]: ...


class SecretBox:
    """Seals webhook secrets at rest with a key derived from the master key, carrying its
    id (`mk:<id>:…`; one sealed before ids were stored is the legacy key's)."""

    def __init__(self, master: MasterKeys | str) -> None:
        self._keys = MasterKeys.single(master) if isinstance(master, str) else master

    @property
    def current_key_id(self) -> str:
        """The id of the master key new seals are made with."""
        return self._keys.current_id

    def seal(self, partner_id: str, secret: str) -> str:
        """The secret, encrypted and bound to the partner."""
        return self._keys.seal("webhook-secrets", partner_id, secret)

    def open(self, partner_id: str, sealed: str) -> str:
        """The secret in clear, to sign with."""
        return self._keys.open("webhook-secrets", partner_id, sealed)

    def is_current(self, sealed: str) -> bool:
        """Whether `sealed` is under the current master key (nothing to re-seal)."""
        return sealed_key_id(sealed)[0] == self._keys.current_id


@dataclass(frozen=True)
class Webhooks:
    """What webhook delivery needs."""

    deliveries: DeliveryStore
    partners: WebhookDirectory
    routings: RoutingRepository
    sender: Sender
    box: SecretBox
    resolver: Resolver
    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    clock: Clock = utc_now
    #: Signing time is always the real time: receivers compare it with their own clock.
    wall_clock: Callable[[], float] = time.time
    #: Plain http to 127.0.0.1 and loopback addresses: only on the dev stack, by the
    #: explicit `LINTAS_REFERRAL_WEBHOOK_ALLOW_LOOPBACK` setting.
    allow_loopback: bool = False


def status_class(status: int | None) -> str:
    """What a partner sees of an attempt's answer: `2xx`…`5xx`, or `no answer` (never
    why: a refused connection and a silent port look the same)."""
    if status is None:
        return "no answer"
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


async def checked_address(hooks: Webhooks, url: str) -> IPAddress:
    """The one address to send to for `url`: its host resolved (or read, if it is an
    address in any spelling) and every answer allowed. Raises `WebhookUrlError`."""
    where = endpoint(url)
    literal = literal_address(where.host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        addresses = await hooks.resolver.resolve(where.host, where.port)
    return check_addresses(where.host, addresses, hooks.allow_loopback)


async def register(
    hooks: Webhooks, partner_id: str, url: str, scheme: SignatureScheme = DEFAULT_SCHEME
) -> str:
    """Register the partner's URL and signature scheme; returns a new `whsec_` signing
    secret (shown only once)."""
    url = check_url(url, hooks.allow_loopback)
    await checked_address(hooks, url)
    secret = new_secret()
    registration = Registration(url, hooks.box.seal(partner_id, secret), scheme)
    await hooks.partners.set_webhook(partner_id, registration)
    return secret


@dataclass(frozen=True)
class RotatedSecret:
    """A new signing secret (shown once) and until when the old one still signs."""

    secret: str
    previous_valid_until: datetime
    registration: Registration


async def rotate_secret(
    hooks: Webhooks, partner_id: str, overlap: timedelta = DEFAULT_ROTATION_OVERLAP
) -> RotatedSecret | None:
    """Give the partner's webhook a new `whsec_` secret; deliveries are signed with the
    old one too until `overlap` has passed. None if it registered no webhook. A secret
    still overlapping from an earlier rotation stops signing now (only one old one)."""
    if not timedelta(0) <= overlap <= MAX_ROTATION_OVERLAP:
        raise ValueError("the overlap must be between 0 and 7 days")
    for _ in range(5):  # another rotation or registration in between: read again
        current = await hooks.partners.webhook(partner_id)
        if current is None:
            return None
        secret = new_secret()
        until = hooks.clock() + overlap
        rotated = replace(
            current,
            sealed_secret=hooks.box.seal(partner_id, secret),
            previous_sealed_secret=current.sealed_secret,
            previous_until=until,
        )
        if await hooks.partners.replace_webhook(partner_id, current, rotated):
            return RotatedSecret(secret, until, rotated)
    raise RuntimeError("the webhook registration kept changing; try again")


def signing_secrets(hooks: Webhooks, partner_id: str, target: Registration) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the replaced one
    during a rotation's overlap window."""
    secrets = [hooks.box.open(partner_id, target.sealed_secret)]
    if target.overlapping(hooks.clock()) and target.previous_sealed_secret is not None:
        secrets.append(hooks.box.open(partner_id, target.previous_sealed_secret))
    return secrets


async def _recipient(hooks: Webhooks, event: CloudEvent) -> tuple[str, str] | None:
    referral_id = event.data.get("referral_id")
    if not isinstance(referral_id, str) or not referral_id:
        return None  # e.g. routing blocked: for the NGO, not for a partner
    partner_id = event.data.get("partner_organisation_id")
    if not isinstance(partner_id, str):
        routing = await hooks.routings.by_referral(referral_id)
        if routing is None:
            return None
        partner_id = routing.referral(referral_id).partner_organisation_id
    return partner_id, referral_id


async def on_referral_event(event: CloudEvent, hooks: Webhooks) -> None:
    """Queue a delivery of a referral event to its partner, if it registered a webhook."""
    recipient = await _recipient(hooks, event)
    if recipient is None:
        return
    partner_id, referral_id = recipient
    if not await hooks.partners.has_webhook(partner_id, referral_id):
        return
    now = hooks.clock()
    body = event.model_dump(mode="json", exclude_none=True)
    # A partner's own text (a decline's reason) is sealed with the case's key, which
    # partners never get: it is left out rather than sent unreadable, and not opened
    # either, since the delivery log would then keep it in clear.
    data = body.get("data")
    if isinstance(data, dict):
        data.pop("note", None)
    await hooks.deliveries.create(
        {
            "_id": deterministic_id("webhook", event.id, partner_id),
            "event_id": event.id,
            "event_type": event.type,
            "case_id": event.subject,
            "referral_id": referral_id,
            "partner_id": partner_id,
            "body": json.dumps(body, separators=(",", ":"), sort_keys=True),
            "state": "pending",
            "created_at": now,
            "window_started_at": now,
            "next_attempt_at": now,
            "attempts": 0,
            "attempts_in_window": 0,
            "log": [],
        }
    )


async def _attempt(hooks: Webhooks, delivery: Document) -> None:
    target = await hooks.partners.webhook(delivery["partner_id"])
    status: int | None = None
    outcome: str
    error: str | None = None  # for the operators' log only, never the partner's
    if target is None:
        outcome, error = "no webhook registered", "no webhook registered"
    else:
        try:
            # Again at each attempt: the name's answer may have changed since.
            address = await checked_address(hooks, target.url)
        except WebhookUrlError as exc:
            outcome, error = "address refused", str(exc)
        else:
            body = delivery["body"].encode()
            current, *previous = signing_secrets(hooks, delivery["partner_id"], target)
            headers = signature_headers(
                target.signature_scheme,
                current,
                delivery_id=delivery["_id"],
                event_id=delivery["event_id"],
                timestamp=int(hooks.wall_clock()),
                body=body,
                also=previous,
            )
            try:
                status = await hooks.sender.post(target.url, address, body, headers)
            except Exception as exc:
                error = type(exc).__name__  # never the URL's answer body: it may echo data
            outcome = status_class(status)
    now = hooks.clock()
    ok = status is not None and 200 <= status < 300
    changes: dict[str, Any] = {"state": "delivered", "next_attempt_at": None}
    if not ok:
        following = hooks.schedule.next_attempt(
            delivery["window_started_at"], delivery["attempts_in_window"] + 1, now
        )
        changes = {
            "state": "pending" if following else "failed",
            "next_attempt_at": following,
        }
    # The code stays for operators; partners see only the class (see the HTTP API).
    attempt = {"at": now, "status_code": status, "status_class": outcome, "ok": ok}
    await hooks.deliveries.record_attempt(delivery["_id"], delivery["attempts"], attempt, changes)
    if not ok:
        log.info(
            "webhook delivery failed",
            delivery_id=delivery["_id"],
            status_code=status,
            error=error,
            state=changes["state"],
        )


async def deliver_due(hooks: Webhooks) -> int:
    """Attempt every delivery that is due; returns how many were attempted."""
    due = await hooks.deliveries.due(hooks.clock())
    for delivery in due:
        await _attempt(hooks, delivery)
    return len(due)
