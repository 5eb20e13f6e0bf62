"""Notify's SMS metrics and spans, added around its adapters by the composition root.

The dispatcher decides; these wrappers only watch: the provider wrapper times and counts
each hand-over (in a span, so the SMS sits in the trace of the event that caused it),
and the repository subclass counts the status changes that stick.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, Final

from lintas_shared.logging import get_logger
from lintas_shared.mongo import Document
from lintas_shared.tracing import tracer
from opentelemetry.trace import SpanKind
from prometheus_client import Counter

from lintas_notify.adapters.message_repository import MongoMessageRepository
from lintas_notify.domain.message import OutgoingSms, SmsStatus
from lintas_notify.ports import ProviderRejectedError, ProviderUnavailableError, SmsProvider

log = get_logger(__name__)

SMS = Counter(
    "lintas_sms",
    "SMS reaching a final status: sent, failed, or suppressed at send time.",
    ["outcome"],
)
SMS_DEFERRED = Counter(
    "lintas_sms_deferred",
    "SMS put back in the schedule, by reason.",
    ["reason"],
)
SMS_PROVIDER_REQUESTS = Counter(
    "lintas_sms_provider_requests",
    "Hand-overs to the SMS provider: accepted, rejected (permanent) or unavailable.",
    ["provider", "result"],
)
#: Deferral reasons as the dispatcher words them -> a bounded label.
_DEFERRAL_REASONS: Final = (
    ("quiet hours", "quiet_hours"),
    ("worker daily limit", "worker_daily_limit"),
    ("provider rate limit", "provider_rate_limit"),
    ("provider unavailable", "provider_unavailable"),
    ("not found at the provider", "not_found_after_stop"),
)


def deferral_reason(reason: str) -> str:
    """The label for a deferral reason (`other` for one not listed)."""
    for prefix, label in _DEFERRAL_REASONS:
        if reason.startswith(prefix):
            return label
    return "other"


class MeteredMessageRepository(MongoMessageRepository):
    """The message repository, counting final statuses and deferrals as they are stored."""

    async def finish(self, message_id: str, status: SmsStatus, now: datetime, **kw: Any) -> bool:
        """As the parent; counts the status when the message moved to it."""
        moved = await super().finish(message_id, status, now, **kw)
        if moved and status in (SmsStatus.SENT, SmsStatus.FAILED, SmsStatus.SUPPRESSED):
            SMS.labels(status.value).inc()
        return moved

    async def schedule(
        self, sms: OutgoingSms, now: datetime, status: SmsStatus, **kw: Any
    ) -> tuple[Document, bool]:
        """As the parent; a record born deferred counts as a deferral by its reason."""
        doc, created = await super().schedule(sms, now, status, **kw)
        if created and kw.get("reason"):
            SMS_DEFERRED.labels(deferral_reason(kw["reason"])).inc()
        return doc, created

    async def defer(
        self, message_id: str, until: datetime, reason: str, now: datetime, **kw: Any
    ) -> bool:
        """As the parent; counts the deferral by its reason when the message moved."""
        moved = await super().defer(message_id, until, reason, now, **kw)
        if moved:
            SMS_DEFERRED.labels(deferral_reason(reason)).inc()
        return moved


class InstrumentedProvider:
    """An SMS provider whose hand-overs are spans and counted; behaviour unchanged."""

    def __init__(self, inner: SmsProvider) -> None:
        self._inner = inner
        self.name = inner.name

    async def send(self, sms: OutgoingSms) -> str:
        """Hand the message to the wrapped provider inside a client span."""
        with tracer().start_as_current_span(
            "sms send",
            kind=SpanKind.CLIENT,
            attributes={
                "lintas.sms.provider": self.name,
                "lintas.sms.template": sms.template,
                "lintas.sms.encoding": str(sms.encoding),
                "lintas.sms.segments": sms.segments,
                "lintas.case_id": sms.case_id or "",
            },
        ):
            try:
                provider_id = await self._inner.send(sms)
            except ProviderRejectedError:
                SMS_PROVIDER_REQUESTS.labels(self.name, "rejected").inc()
                raise
            except ProviderUnavailableError:
                SMS_PROVIDER_REQUESTS.labels(self.name, "unavailable").inc()
                raise
            SMS_PROVIDER_REQUESTS.labels(self.name, "accepted").inc()
            log.info(
                "sms accepted by provider",
                message_id=sms.id,
                provider=self.name,
                template=sms.template,
                segments=sms.segments,
            )
            return provider_id

    async def find_sent(self, client_reference: str) -> str | None:
        """As the wrapped provider."""
        return await self._inner.find_sent(client_reference)

    async def forget(self, client_references: Collection[str]) -> None:
        """As the wrapped provider."""
        await self._inner.forget(client_references)
