"""Handing scheduled SMS to the provider: the rules at send time, and never twice.

A message is first recorded as `scheduled` (that record is the decision to send, keyed
by cause + template). `Dispatcher.dispatch` then, at the moment of sending, checks in
order: opt-out, quiet hours in the worker's local time, her daily limit, the provider's
rate. A rule that says "not now" stores the time it allows on the message (a deferral);
the background loop sends it then. Only then is the message claimed (`sending`) and
handed over. A message that was ever claimed before is first looked up at the provider
by its client reference, so a crash between the provider's acceptance and our record
does not send it again (see the README for what remains of that window).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from lintas_shared.background import BackgroundTask
from lintas_shared.backoff import Jitter, backoff_seconds
from lintas_shared.crypto import CaseKeyMissingError
from lintas_shared.events import SmsSent, make_event
from lintas_shared.ids import deterministic_id
from lintas_shared.logging import get_logger
from lintas_shared.mongo import Document
from lintas_shared.unit_of_work import VERSION_FIELD

from lintas_notify.domain.message import MessageKind, OutgoingSms, SmsStatus
from lintas_notify.domain.schedule import ProviderRateLimit, QuietHours, WorkerLimit, worker_zone
from lintas_notify.ports import (
    CaseKeyReader,
    MessageStore,
    OptOuts,
    ProviderRejectedError,
    ProviderUnavailableError,
    ReceiptSettler,
    SmsProvider,
    sms_from_document,
)

log = get_logger(__name__)
SOURCE = "/lintas/notify"
Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryBudget:
    """How hard one dispatch tries a provider that is unavailable.

    Inline attempts wait for the backoff or the provider's Retry-After, whichever is
    longer, but never more than `max_inline_wait`: a longer Retry-After is stored as a
    deferral instead. `max_attempts` in total, over all dispatches, before `failed`.
    """

    inline_attempts: int = 3
    base_delay: float = 0.5
    max_inline_wait: float = 10.0
    max_attempts: int = 10

    jitter: Jitter = random.random

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number `attempt` (from 1): the jittered
        backoff, or the provider's Retry-After when longer."""
        backoff = backoff_seconds(self.base_delay, attempt, math.inf, self.jitter)
        return max(backoff, retry_after or 0.0)


@dataclass
class SendRules:
    """The rules checked at send time."""

    quiet_hours: QuietHours = field(default_factory=QuietHours)
    worker_limit: WorkerLimit = field(default_factory=WorkerLimit)
    provider_rate: ProviderRateLimit = field(default_factory=ProviderRateLimit)


class Dispatcher:
    """Sends scheduled messages when the rules allow, once."""

    def __init__(
        self,
        messages: MessageStore,
        preferences: OptOuts,
        provider: SmsProvider,
        keys: CaseKeyReader,
        *,
        rules: SendRules | None = None,
        retry: RetryBudget | None = None,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        poll_interval: float = 1.0,
        receipts: ReceiptSettler | None = None,
    ) -> None:
        self._messages = messages
        self._preferences = preferences
        self._provider = provider
        self._keys = keys
        self._rules = rules or SendRules()
        self._retry = retry or RetryBudget()
        self._clock = clock
        self._sleep = sleep
        self._poll_interval = poll_interval
        self._receipts = receipts
        self._loop = BackgroundTask("sms-dispatch", self._run)

    @property
    def provider_name(self) -> str:
        """The provider messages are handed to."""
        return self._provider.name

    async def forget(self, message_ids: list[str]) -> None:
        """Erasure: the provider drops the phone of these messages from what it keeps."""
        await self._provider.forget(message_ids)

    async def dispatch(self, message_id: str, *, raise_unavailable: bool = True) -> SmsStatus:
        """Send one scheduled message if the rules allow it now; returns its status after.

        When the provider stays unavailable through the inline attempts, raises
        ProviderUnavailableError if `raise_unavailable` (an event handler: the consumer
        retries and finally parks the event), else stores a deferral (the loop).
        """
        doc = await self._messages.get(message_id)
        if doc is None:
            raise KeyError(message_id)
        return await self.dispatch_record(doc, raise_unavailable=raise_unavailable)

    async def dispatch_record(
        self, doc: Document, *, raise_unavailable: bool = True, phone: str | None = None
    ) -> SmsStatus:
        """`dispatch` for a message already read (`phone`: the plaintext, if at hand)."""
        message_id = doc["_id"]
        status = SmsStatus(doc["status"])
        if status is SmsStatus.SENDING:
            # Left by a crash or an unavailable provider: ask before sending again.
            return await self._retry_sending(doc, raise_unavailable)
        if status is not SmsStatus.SCHEDULED:
            return status
        now = self._clock()
        if doc["send_after"] > now:
            return status
        blocked = await self._blocked(doc, now)
        if blocked is not None:
            return blocked
        try:
            phone = phone or await self._phone(doc)
        except CaseKeyMissingError:
            await self._messages.finish(
                message_id,
                SmsStatus.SUPPRESSED,
                now,
                from_statuses=[SmsStatus.SCHEDULED],
                reason="case erased",
            )
            return SmsStatus.SUPPRESSED
        claimed = await self._messages.claim(message_id, now)
        if claimed is None:
            current = await self._messages.get(message_id)
            return SmsStatus(current["status"]) if current else status
        return await self._send(claimed, sms_from_document(claimed, phone), raise_unavailable)

    async def _retry_sending(self, doc: Document, raise_unavailable: bool) -> SmsStatus:
        """A notification found `sending`: by the event's retry (its attempt stopped, or
        gave up on an unavailable provider), or by the schedule loop once the lease of
        the attempt ran out (the message comes due then: none is left `sending` for
        ever). The provider is asked first; then the next attempt is claimed. While a
        live attempt holds it, this returns `sending`, and the message comes due again
        when that lease runs out, should the attempt stop without a record."""
        found = await self._provider.find_sent(doc["_id"])
        if found is not None:
            return await self._record_sent(doc, found)
        if doc.get("kind") == MessageKind.REPLY.value:
            return SmsStatus.SENDING  # no phone kept: the retried webhook brings it
        now = self._clock()
        claimed = await self._messages.claim(doc["_id"], now, from_status=SmsStatus.SENDING)
        if claimed is None:
            return SmsStatus.SENDING  # another attempt is under way
        try:
            phone = await self._phone(claimed)
        except CaseKeyMissingError:
            await self._messages.finish(
                doc["_id"],
                SmsStatus.SUPPRESSED,
                now,
                from_statuses=[SmsStatus.SENDING],
                reason="case erased",
                claim=claimed.get("claim_id"),
            )
            return SmsStatus.SUPPRESSED
        return await self._send(claimed, sms_from_document(claimed, phone), raise_unavailable)

    async def send_new(
        self,
        sms: OutgoingSms,
        *,
        current_country: str | None,
        time_zone: str | None,
        phone: str | None = None,
    ) -> SmsStatus:
        """Decide and record a new notification in one insert: the rules are checked
        first, so the record is born `sending` (its first attempt claimed) when they allow
        it now, `scheduled` until the time they allow, or `suppressed`. A redelivered
        event finds the record made before and carries on from where it stands."""
        now = self._clock()
        verdict = await self._verdict(sms.phone_hash, current_country, time_zone, now)
        if verdict is not None and verdict[0] is SmsStatus.SUPPRESSED:
            await self._messages.record_suppressed(sms, verdict[2], now)
            return SmsStatus.SUPPRESSED
        until, reason = (None, None) if verdict is None else verdict[1:]
        doc, created = await self._messages.schedule(
            sms,
            now,
            SmsStatus.SENDING if verdict is None else SmsStatus.SCHEDULED,
            current_country=current_country,
            time_zone=time_zone,
            send_after=until,
            reason=reason,
        )
        if not created:
            return await self.dispatch_record(doc, phone=phone)
        if verdict is not None:
            return SmsStatus.SCHEDULED
        try:
            phone = phone or await self._phone(doc)
        except CaseKeyMissingError:
            await self._messages.finish(
                sms.id,
                SmsStatus.SUPPRESSED,
                now,
                from_statuses=[SmsStatus.SENDING],
                reason="case erased",
                claim=doc.get("claim_id"),
            )
            return SmsStatus.SUPPRESSED
        return await self._send(doc, sms_from_document(doc, phone), raise_unavailable=True)

    async def send_reply(self, sms: OutgoingSms) -> SmsStatus:
        """Send a reply to the worker's own SMS now (no quiet hours: she just wrote)."""
        now = self._clock()
        doc, created = await self._messages.schedule(sms, now, SmsStatus.SENDING)
        status = SmsStatus(doc["status"])
        if status is not SmsStatus.SENDING:
            return status
        if not created:
            # A retried webhook: the earlier attempt may have reached the provider.
            found = await self._provider.find_sent(sms.id)
            if found is not None:
                return await self._record_sent(doc, found)
        return await self._send(doc, sms, raise_unavailable=True)

    async def _verdict(
        self, phone_hash: str, country: str | None, time_zone: str | None, now: datetime
    ) -> tuple[SmsStatus, datetime, str] | None:
        """None if the rules allow a send now; else `suppressed` (opted out) or
        `scheduled` until the time they allow, and why."""
        if await self._preferences.is_opted_out(phone_hash):
            return SmsStatus.SUPPRESSED, now, "worker opted out"
        zone = worker_zone(country or "", time_zone)
        rules = self._rules
        until = rules.quiet_hours.next_allowed(now, zone)
        if until > now:
            return SmsStatus.SCHEDULED, until, "quiet hours"
        sent = await self._messages.sent_times(phone_hash, now - rules.worker_limit.window)
        until = rules.worker_limit.next_allowed(now, sent)
        if until > now:
            return SmsStatus.SCHEDULED, until, "worker daily limit"
        slot = rules.provider_rate.reserve(now)
        if slot > now:
            return SmsStatus.SCHEDULED, slot, "provider rate limit"
        return None

    async def _blocked(self, doc: Document, now: datetime) -> SmsStatus | None:
        message_id = doc["_id"]
        verdict = await self._verdict(
            doc["phone_hash"], doc.get("current_country"), doc.get("time_zone"), now
        )
        if verdict is None:
            return None
        status, until, reason = verdict
        if status is SmsStatus.SUPPRESSED:
            await self._messages.finish(
                message_id,
                SmsStatus.SUPPRESSED,
                now,
                from_statuses=[SmsStatus.SCHEDULED],
                reason=reason,
            )
            return SmsStatus.SUPPRESSED
        await self._messages.defer(message_id, until, reason, now)
        return SmsStatus.SCHEDULED

    async def _phone(self, doc: Document) -> str:
        sealed = doc.get("to")
        if not sealed or not doc.get("case_id"):
            raise CaseKeyMissingError(doc["_id"])
        # From the vault, not memory: no SMS goes out once the case is erased.
        key = await self._keys.current(doc["case_id"])
        return key.decrypt("worker.phone", sealed)

    async def _send(self, doc: Document, sms: OutgoingSms, raise_unavailable: bool) -> SmsStatus:
        """The attempts of the claim `doc` holds (its `claim_id`): every change they make
        names it, so once another attempt took the message over they change nothing."""
        attempts_before = int(doc.get("attempts", 1)) - 1
        claim = doc.get("claim_id")
        for attempt in range(1, self._retry.inline_attempts + 1):
            if attempts_before + attempt > 1:
                found = await self._provider.find_sent(sms.id)
                if found is not None:
                    return await self._record_sent(doc, found)
            try:
                provider_message_id = await self._provider.send(sms)
            except ProviderRejectedError as exc:
                await self._messages.finish(
                    sms.id,
                    SmsStatus.FAILED,
                    self._clock(),
                    from_statuses=[SmsStatus.SENDING],
                    reason=exc.reason,
                    provider=self._provider.name,
                    claim=claim,
                )
                log.warning("provider refused sms", message_id=sms.id, reason=exc.reason)
                return SmsStatus.FAILED
            except ProviderUnavailableError as exc:
                total = attempts_before + attempt
                wait = self._retry.delay(attempt, exc.retry_after)
                last_inline = attempt == self._retry.inline_attempts
                stop = (
                    total >= self._retry.max_attempts
                    or last_inline
                    or wait > self._retry.max_inline_wait
                )
                held = await self._messages.note_attempt(
                    sms.id, self._clock(), exc.reason, another=not stop, claim=claim, kind=sms.kind
                )
                if not held:
                    # Its lease ran out and another attempt took the message over: that
                    # one is in charge now (and this one must not move it).
                    log.warning("sms attempt taken over", message_id=sms.id)
                    return SmsStatus.SENDING
                if total >= self._retry.max_attempts:
                    return await self._give_up(sms.id, exc, claim)
                if stop:
                    return await self._unavailable(sms, exc, wait, raise_unavailable, claim)
                log.info("provider unavailable; retrying", message_id=sms.id, wait=wait)
                await self._sleep(wait)
                continue
            return await self._record_sent(doc, provider_message_id)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _unavailable(
        self,
        sms: OutgoingSms,
        exc: ProviderUnavailableError,
        wait: float,
        raise_: bool,
        claim: str | None,
    ) -> SmsStatus:
        now = self._clock()
        if raise_ and wait <= self._retry.max_inline_wait:
            # The event handler's way: the message stays `sending` (the provider may have
            # it), the consumer retries the event and, past its budget, parks it in the
            # DLQ. A retry, a replay or a restart resolves the message before sending.
            raise exc
        # Keep the provider's wish: the next attempt is not before Retry-After.
        await self._messages.defer(
            sms.id,
            now + timedelta(seconds=wait),
            f"provider unavailable: {exc.reason}",
            now,
            from_status=SmsStatus.SENDING,
            kind=sms.kind,
            claim=claim,
        )
        return SmsStatus.SCHEDULED

    async def _give_up(
        self, message_id: str, exc: ProviderUnavailableError, claim: str | None
    ) -> SmsStatus:
        await self._messages.finish(
            message_id,
            SmsStatus.FAILED,
            self._clock(),
            from_statuses=[SmsStatus.SENDING],
            reason=f"retry budget spent: {exc.reason}",
            provider=self._provider.name,
            claim=claim,
        )
        raise exc

    async def _record_sent(self, doc: Document, provider_message_id: str) -> SmsStatus:
        now = self._clock()
        events = []
        if doc.get("case_id") and doc.get("kind") == MessageKind.NOTIFICATION.value:
            sent = SmsSent(
                case_id=doc["case_id"],
                message_id=doc["_id"],
                template=doc["template"],
                language=doc["language"],
                sent_at=now,
            )
            # One id per message: were the send recorded twice, consumers would see
            # the same event again (`make faults` once saw two for one SMS).
            sent_id = deterministic_id("sms-sent", doc["_id"])
            events.append(make_event(sent, source=SOURCE, subject=doc["case_id"], event_id=sent_id))
        # Not narrowed to a claim: the provider has it, whichever attempt handed it over.
        await self._messages.finish(
            doc["_id"],
            SmsStatus.SENT,
            now,
            from_statuses=[SmsStatus.SENDING],
            provider=self._provider.name,
            provider_message_id=provider_message_id,
            events=events,
            version=doc.get(VERSION_FIELD),
        )
        if self._receipts is not None:
            try:
                # A receipt can overtake the submit's response: apply one kept for it.
                await self._receipts.recorded_sent(self._provider.name, provider_message_id)
            except Exception as exc:  # the next pass applies it
                log.warning("early receipt not applied yet", error=type(exc).__name__)
        return SmsStatus.SENT

    async def _resolve(self, doc: Document) -> SmsStatus:
        """A message found in `sending`: did the provider take it? Never a blind resend."""
        found = await self._provider.find_sent(doc["_id"])
        if found is not None:
            return await self._record_sent(doc, found)
        now = self._clock()
        if doc.get("kind") == MessageKind.REPLY.value:
            # No phone is kept for replies; the gateway's retried webhook brings it again.
            return SmsStatus.SENDING
        # Only if no attempt claimed it since it was read, and none holds a live lease: an
        # attempt under way may reach the provider after the question above.
        moved = await self._messages.defer(
            doc["_id"],
            now,
            "not found at the provider after a stop",
            now,
            from_status=SmsStatus.SENDING,
            claim=doc.get("claim_id"),
        )
        return SmsStatus.SCHEDULED if moved else SmsStatus.SENDING

    async def resolve_in_sending(self) -> int:
        """At start-up: settle every message an earlier run left in `sending` (those
        whose lease ran out: another instance may be sending the others right now)."""
        count = 0
        for doc in await self._messages.in_sending(self._clock()):
            await self._resolve(doc)
            count += 1
        if count:
            log.info("resolved messages left sending", count=count)
        return count

    async def run_due(self) -> int:
        """Dispatch every scheduled message whose time has come, and resolve every one
        left `sending` whose attempt's lease ran out; returns how many went."""
        sent = 0
        for doc in await self._messages.due(self._clock()):
            try:
                status = await self.dispatch_record(doc, raise_unavailable=False)
            except ProviderUnavailableError:
                continue  # recorded as failed: the budget is spent
            except Exception as exc:
                # This one stays `sending` (due again when its lease runs out) or
                # `scheduled`; the others of this pass still go.
                log.warning("sms dispatch failed", message_id=doc["_id"], error=type(exc).__name__)
                continue
            sent += status is SmsStatus.SENT
        return sent

    async def settle_receipts(self) -> int:
        """Apply delivery receipts kept for messages recorded by now (e.g. a stop fell
        between a `sent` record and its early receipt); how many were applied."""
        if self._receipts is None:
            return 0
        return await self._receipts.settle_early()

    async def _run(self) -> None:
        while True:
            try:
                await self.run_due()
                await self.settle_receipts()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("sms dispatch pass failed", error=type(exc).__name__)
            await self._sleep(self._poll_interval)

    def start(self) -> None:
        """Run the schedule of deferred messages in the background."""
        self._loop.start()

    async def stop(self) -> None:
        """Stop the schedule loop (a message in flight finishes or stays `sending`)."""
        await self._loop.stop()
