"""Opt-out and opt-in (by SMS and by the NGO), and STATUS by SMS, on the real store."""

from __future__ import annotations

from datetime import timedelta

import pytest
from lintas_notify.adapters.reply_budget import MongoReplyBudget
from lintas_notify.domain.message import SmsStatus
from lintas_shared.crypto import phone_lookup_hash
from lintas_shared.envelope import CloudEvent
from lintas_shared.outbox import entry_event

from tests.support.fixtures import PHONE_HASH_SECRET, case_submitted
from tests.support.notify import (
    AT,
    REPLY_LIMIT,
    Notify,
    deadline_approaching,
    referral_accepted,
    sms_preference_changed,
)

pytestmark = pytest.mark.integration
PHONE = "+6281234567890"
STRANGER = "+6281299990000"


async def submit(notify: Notify, case_id: str, reference: str = "LB-7K3Q9") -> None:
    key = await notify.vault.create(case_id)
    await notify.handlers.on_case_submitted(case_submitted(case_id, key=key, reference=reference))


def replies(notify: Notify) -> list[tuple[str, str, str]]:
    return [(s.to, s.template, s.body) for s in notify.provider.sent if s.kind == "reply"]


async def test_stop_by_sms_is_confirmed_once_and_silences_her(notify: Notify) -> None:
    await submit(notify, "case-o")
    outcome = await notify.conversations.inbound(PHONE, "  berhenti ", "in-1")
    assert (outcome.intent, outcome.replied_with) == ("opt_out", "opted_out")
    again = await notify.conversations.inbound(PHONE, "STOP", "in-2")
    assert again.replied_with is None  # answered once
    await notify.conversations.inbound(PHONE, "  berhenti ", "in-1")  # a retried webhook
    [(to, template, body)] = replies(notify)
    assert (to, template) == (PHONE, "opted_out")
    assert body.startswith("Lintas: Anda tidak akan menerima SMS lagi")  # her language

    notify.clock.advance(hours=1)
    await notify.handlers.on_referral_accepted(referral_accepted("case-o"))
    record = next(
        r for r in await notify.messages.for_case("case-o") if r["template"] == "referral_accepted"
    )
    assert (record["status"], record["reason"]) == ("suppressed", "worker opted out")
    assert record["to"] is None

    # Intake hears of it, to show it on the case.
    raw = await notify.preferences._collection.find_one(
        {"_id": phone_lookup_hash(PHONE, PHONE_HASH_SECRET)}
    )
    assert raw is not None
    [entry] = raw["outbox"]
    event = entry_event(entry).model_dump(mode="json")
    # On notify's own topic: notify has no write on intake's (least privilege).
    assert entry["topic"] == "lintas.notifications.v1"
    assert event["type"] == "org.lintas.notification.sms_preference_texted"
    assert event["data"] == {
        "case_id": "case-o",  # the case and the preference only
        "opted_out": True,
        "channel": "sms",
        "changed_at": event["data"]["changed_at"],
    }
    assert event["source"] == "/lintas/notify"

    # Its own announcement, were it to come back (an older notify's, on the cases topic),
    # is not applied again.
    legacy = {**event, "type": "org.lintas.case.sms_preference_changed"}
    await notify.handlers.on_preference_changed(CloudEvent.model_validate(legacy))
    assert await notify.preferences._collection.find_one({"_id": raw["_id"]}) == raw
    assert await notify.preferences._collection.count_documents({}) == 1

    notify.clock.advance(hours=1)
    back = await notify.conversations.inbound(PHONE, "Mulai", "in-3")
    assert back.replied_with == "opted_in"
    await notify.handlers.on_deadline_approaching(deadline_approaching("case-o"))
    assert notify.provider.sent[-1].template == "deadline_approaching"


async def test_a_deferred_message_is_dropped_when_she_opts_out_before_it_goes(
    notify: Notify,
) -> None:
    await submit(notify, "case-w")
    notify.clock.advance(hours=12)  # 22:00 in Jakarta: quiet hours
    await notify.handlers.on_referral_accepted(referral_accepted("case-w"))
    await notify.conversations.inbound(PHONE, "STOP", "in-w")
    notify.clock.advance(hours=10)
    assert await notify.dispatcher.run_due() == 0
    templates = {r["template"]: r["status"] for r in await notify.messages.for_case("case-w")}
    assert templates["referral_accepted"] == "suppressed"


async def test_the_ngo_opts_her_out_and_in_through_intake(notify: Notify) -> None:
    await submit(notify, "case-api")
    phone_hash = phone_lookup_hash(PHONE, PHONE_HASH_SECRET)
    later = notify.clock.now
    await notify.handlers.on_preference_changed(
        sms_preference_changed("case-api", phone_hash, True, later)
    )
    # An older change arriving late does not undo the newer one.
    await notify.handlers.on_preference_changed(
        sms_preference_changed("case-api", phone_hash, False, AT)
    )
    assert await notify.preferences.is_opted_out(phone_hash)
    await notify.handlers.on_referral_accepted(referral_accepted("case-api"))
    assert [s.template for s in notify.provider.sent] == ["case_received"]
    assert replies(notify) == []  # the API path sends no confirmation SMS

    notify.clock.advance(hours=1)
    await notify.handlers.on_preference_changed(
        sms_preference_changed("case-api", phone_hash, False, notify.clock.now)
    )
    await notify.handlers.on_deadline_approaching(deadline_approaching("case-api"))
    assert notify.provider.sent[-1].template == "deadline_approaching"


async def test_status_from_the_registered_phone_names_the_stage_in_her_language(
    notify: Notify,
) -> None:
    await submit(notify, "case-st")
    await notify.handlers.on_referral_accepted(referral_accepted("case-st"))
    outcome = await notify.conversations.inbound(PHONE, "status lb-7k3q9", "in-s1")
    assert outcome.replied_with == "status_reply"
    await notify.conversations.inbound(PHONE, "LB-7K3Q9", "in-s2")  # just the reference
    [first, second] = replies(notify)
    assert first[2] == "Lintas: Kasus LB-7K3Q9: sudah ditangani pengacara."
    assert second[2] == first[2]


async def test_status_from_another_number_says_nothing_about_any_case(notify: Notify) -> None:
    await submit(notify, "case-x")
    await notify.conversations.inbound(STRANGER, "STATUS LB-7K3Q9", "in-x1")
    await notify.conversations.inbound(STRANGER, "STATUS LB-AAAAA", "in-x2")  # no such case
    [(to1, t1, body1), (to2, t2, body2)] = replies(notify)
    assert (to1, t1, to2, t2) == (STRANGER, "status_unknown", STRANGER, "status_unknown")
    assert body1 == body2  # an existing and a missing reference look the same
    assert "LB-7K3Q9" not in body1
    assert "diterima" not in body1
    assert "received" not in body1


async def test_reply_records_keep_no_phone(notify: Notify) -> None:
    await submit(notify, "case-rp")
    await notify.conversations.inbound(PHONE, "STATUS LB-7K3Q9", "in-rp")
    stored = [d async for d in notify.messages._collection.find({"kind": "reply"})]
    assert [d["status"] for d in stored] == [SmsStatus.SENT.value]
    assert stored[0]["to"] is None
    assert stored[0]["phone_hash"] == phone_lookup_hash(PHONE, PHONE_HASH_SECRET)


async def test_one_phone_gets_at_most_the_reply_limit_of_answers_a_window(notify: Notify) -> None:
    await submit(notify, "case-flood")
    flood = [
        await notify.conversations.inbound(STRANGER, "STATUS LB-7K3Q9", f"in-flood-{n}")
        for n in range(REPLY_LIMIT + 3)
    ]
    # Over the limit she still opts out, but is not told so by SMS.
    stop = await notify.conversations.inbound(STRANGER, "STOP", "in-flood-stop")

    assert [o.replied_with for o in flood] == ["status_unknown"] * REPLY_LIMIT + [None] * 3
    assert stop.replied_with is None
    assert await notify.preferences.is_opted_out(phone_lookup_hash(STRANGER, PHONE_HASH_SECRET))
    assert [to for to, _, _ in replies(notify)] == [STRANGER] * REPLY_LIMIT
    # The answers not sent are recorded, without the number.
    suppressed = [
        doc
        async for doc in notify.messages._collection.find({"status": "suppressed", "kind": "reply"})
    ]
    assert len(suppressed) == 4
    assert {(doc["reason"], doc["to"]) for doc in suppressed} == {("reply limit", None)}

    # A retried webhook of an answered SMS keeps its answer and sends nothing new...
    retried = await notify.conversations.inbound(STRANGER, "STATUS LB-7K3Q9", "in-flood-0")
    assert retried.replied_with == "status_unknown"
    # ...another instance on the same store counts the same window...
    other = MongoReplyBudget(
        notify.messages._collection.database["reply_budget"],
        limit=REPLY_LIMIT,
        window=timedelta(hours=1),
    )
    assert not await other.allow(
        phone_lookup_hash(STRANGER, PHONE_HASH_SECRET), "reply-new", notify.clock.now
    )
    # ...another phone is answered...
    await notify.conversations.inbound(PHONE, "status lb-7k3q9", "in-flood-her")
    # ...and the next window answers this phone again.
    notify.clock.advance(hours=1)
    again = await notify.conversations.inbound(STRANGER, "STATUS LB-7K3Q9", "in-flood-next")
    assert again.replied_with == "status_unknown"
    assert [to for to, _, _ in replies(notify)] == [STRANGER] * REPLY_LIMIT + [PHONE, STRANGER]
