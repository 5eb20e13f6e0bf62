"""What the worker's own SMS and the provider's receipts change, and the replies.

Everything is keyed by the phone's keyed hash: the plaintext number of an inbound SMS is
used only to address the reply, and never stored. A STATUS reply names a case's stage
only when the asking phone is the one registered on that case; any other number gets
the same neutral answer as an unknown reference, so nobody can probe references.
A phone gets at most so many answers a window (`MongoReplyBudget`): what it sends
beyond is acted on all the same, and its answer recorded as suppressed, never sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from lintas_shared.crypto import phone_lookup_hash
from lintas_shared.envelope import CloudEvent
from lintas_shared.events import SmsPreferenceTexted, make_event
from lintas_shared.ids import deterministic_id
from lintas_shared.logging import get_logger

from lintas_notify.dispatch import SOURCE, Dispatcher
from lintas_notify.domain.encoding import sms_cost
from lintas_notify.domain.inbound import InboundRequest, Intent, parse_inbound
from lintas_notify.domain.message import MessageKind, OutgoingSms
from lintas_notify.domain.templates import TemplateCatalogue
from lintas_notify.ports import CaseProfileStore, MessageStore, PreferenceStore, ReplyBudget
from lintas_notify.receipts import DeliveryReports

log = get_logger(__name__)
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class InboundOutcome:
    """What was done with an inbound SMS (for the HTTP answer; no personal data)."""

    intent: Intent
    replied_with: str | None


@dataclass
class Conversations:
    """Inbound SMS (opt-out, opt-in, STATUS) and delivery receipts."""

    messages: MessageStore
    profiles: CaseProfileStore
    preferences: PreferenceStore
    dispatcher: Dispatcher
    catalogue: TemplateCatalogue
    phone_hash_key: str
    clock: Clock
    reports: DeliveryReports
    reply_budget: ReplyBudget

    async def inbound(self, sender: str, body: str, inbound_id: str | None) -> InboundOutcome:
        """Act on one inbound SMS and answer it (at most once per change or request)."""
        phone_hash = phone_lookup_hash(sender, self.phone_hash_key)
        request = parse_inbound(body)
        language = (
            await self.profiles.language_for_phone(phone_hash)
            or request.language_hint
            or self.catalogue.default_language
        )
        now = self.clock()
        template: str | None = None
        values: dict[str, str] = {}
        if request.intent in (Intent.OPT_OUT, Intent.OPT_IN):
            opted_out = request.intent is Intent.OPT_OUT
            changed = await self.preferences.change(
                phone_hash, opted_out, now, "sms", await self._announce(phone_hash, opted_out, now)
            )
            # Answered once: repeating STOP changes nothing and gets no second answer.
            template = ("opted_out" if opted_out else "opted_in") if changed else None
        elif request.intent is Intent.STATUS:
            template, values, language = await self._status(request, phone_hash, language)
        if template is None:
            return InboundOutcome(request.intent, None)
        cause = inbound_id or f"{phone_hash}#{body.strip().upper()}#{now.isoformat()}"
        sms = self._reply(sender, phone_hash, template, language, cause, values)
        if not await self.reply_budget.allow(phone_hash, sms.id, now):
            # Each answer costs: a number writing again and again gets no more of them.
            await self.messages.record_suppressed(sms, "reply limit", now)
            log.info("inbound sms not answered: reply limit", intent=request.intent.value)
            return InboundOutcome(request.intent, None)
        await self.dispatcher.send_reply(sms)
        return InboundOutcome(request.intent, template)

    async def _status(
        self, request: InboundRequest, phone_hash: str, language: str
    ) -> tuple[str, dict[str, str], str]:
        case = await self.profiles.by_reference(request.reference or "")
        if case is None or case.phone_hash != phone_hash:
            return "status_unknown", {}, language
        return (
            "status_reply",
            {"reference": case.reference, "stage": case.stage.value},
            case.language,
        )

    async def _announce(
        self, phone_hash: str, opted_out: bool, now: datetime
    ) -> list[tuple[str, CloudEvent]]:
        # Intake applies the change to each of her cases and shows it in their timelines.
        return [
            (
                SmsPreferenceTexted.TOPIC,
                make_event(
                    SmsPreferenceTexted(
                        case_id=case_id,  # the case and the preference: nothing else
                        opted_out=opted_out,
                        changed_at=now,
                    ),
                    source=SOURCE,
                    subject=case_id,
                ),
            )
            for case_id in await self.profiles.case_ids_for_phone(phone_hash)
        ]

    def _reply(
        self,
        sender: str,
        phone_hash: str,
        template: str,
        language: str,
        cause: str,
        values: dict[str, str],
    ) -> OutgoingSms:
        values.setdefault("reference", "")
        body, used = self.catalogue.render(template, language, **values)
        cost = sms_cost(body)
        return OutgoingSms(
            id=deterministic_id("reply", cause, template),
            case_id=None,
            case_reference=values["reference"] or None,
            to=sender,
            to_sealed=None,
            phone_hash=phone_hash,
            body=body,
            language=used,
            template=template,
            encoding=cost.encoding,
            segments=cost.segments,
            causing_event=f"inbound#{deterministic_id('inbound', cause)}",
            kind=MessageKind.REPLY,
        )

    async def receipt(self, provider_message_id: str, status: str, reason: str | None) -> bool:
        """Record a provider's delivery report (see `DeliveryReports.receipt`); False if
        its message is not recorded yet (a settling report is then kept for it)."""
        return await self.reports.receipt(
            self.dispatcher.provider_name, provider_message_id, status, reason
        )
