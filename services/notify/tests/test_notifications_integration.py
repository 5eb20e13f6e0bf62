"""Which SMS each event sends, once, on the real MongoDB-protocol server (fake provider)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from lintas_notify.adapters.message_repository import LEASE
from lintas_notify.dispatch import Dispatcher
from lintas_notify.domain.message import SmsStatus
from lintas_notify.ports import ProviderRejectedError, ProviderUnavailableError
from lintas_shared.events import CaseDetailsCorrected, WorkerInfo, make_event
from lintas_shared.ids import deterministic_id
from lintas_shared.outbox import entry_event
from lintas_shared.values import ConsentPurpose

from tests.support.fixtures import case_submitted
from tests.support.notify import (
    Notify,
    RecordingProvider,
    case_closed,
    case_erased,
    deadline_approaching,
    referral_accepted,
    referral_closed,
    referral_offered,
    referral_progressed,
    with_worker,
)

pytestmark = pytest.mark.integration
PHONE = "+6281234567890"


async def submit(notify: Notify, case_id: str, **kwargs: object) -> None:
    key = await notify.vault.create(case_id)
    await notify.handlers.on_case_submitted(case_submitted(case_id, key=key, **kwargs))  # type: ignore[arg-type]


async def test_each_step_sends_its_sms_in_her_language_and_records_it(notify: Notify) -> None:
    await submit(notify, "case-a", reference="LB-7K3Q9")
    await notify.handlers.on_referral_offered(referral_offered("case-a"))
    # A day apart, as in life (she gets at most 3 SMS in 24 hours).
    for handle, event in [
        (notify.handlers.on_referral_accepted, referral_accepted("case-a")),
        (notify.handlers.on_referral_progressed, referral_progressed("case-a")),
        (notify.handlers.on_deadline_approaching, deadline_approaching("case-a")),
        (notify.handlers.on_case_closed, case_closed("case-a", "recovered")),
    ]:
        notify.clock.advance(days=1)
        await handle(event)

    sent = notify.provider.sent
    assert [s.template for s in sent] == [
        "case_received",
        "referral_accepted",
        "documents_needed",
        "deadline_approaching",
        "case_closed",
    ]
    assert all(s.to == PHONE and s.language == "id" for s in sent)
    assert all("LB-7K3Q9" in s.body for s in sent)
    assert "Hong Kong" in sent[1].body  # the country, never the lawyer
    assert "org-demo-legal-hk" not in sent[1].body
    assert "01-10-2026" in sent[3].body
    assert "hak Anda berhasil didapatkan" in sent[4].body
    for sms in sent:
        for secret in ("12000", "HKD", "Majikan", "Contoh", "HK-LT"):
            assert secret not in sms.body

    records = {r["template"]: r for r in await notify.messages.for_case("case-a")}
    accepted = records["referral_accepted"]
    assert accepted["status"] == "sent"
    assert (accepted["encoding"], accepted["segments"]) == ("GSM-7", 1)
    assert accepted["language"] == "id"
    assert accepted["provider"] == "fake"
    assert accepted["provider_message_id"] == "fake-2"
    assert accepted["causing_event"].startswith("/lintas/referral#")
    assert accepted["to"].startswith("enc:v1:")  # sealed at rest
    assert [h["status"] for h in accepted["status_history"]] == ["scheduled", "sending", "sent"]
    raw = await notify.messages._collection.find_one({"_id": accepted["_id"]})
    assert raw is not None
    [entry] = raw["outbox"]
    assert entry_event(entry).type == "org.lintas.notification.sms_sent"
    assert entry_event(entry).data["template"] == "referral_accepted"
    # The fact "this SMS was sent" has one id, however often it were recorded.
    assert entry_event(entry).id == deterministic_id("sms-sent", accepted["_id"])


async def test_english_for_a_worker_who_prefers_it(notify: Notify) -> None:
    await submit(notify, "case-en", language="en", reference="LB-AAAAA")
    [sms] = notify.provider.sent
    assert sms.language == "en"
    assert sms.body.startswith("Lintas: We have received your case. Your case number is LB-AAAAA")


async def test_redelivered_events_never_send_twice(notify: Notify) -> None:
    key = await notify.vault.create("case-r")
    submitted = case_submitted("case-r", key=key)
    accepted = referral_accepted("case-r")
    for _ in range(3):
        await notify.handlers.on_case_submitted(submitted)
        await notify.handlers.on_referral_accepted(accepted)
    assert [s.template for s in notify.provider.sent] == ["case_received", "referral_accepted"]
    assert len(await notify.messages.for_case("case-r")) == 2


async def test_closure_by_the_ngo_and_the_partner_sends_one_sms(notify: Notify) -> None:
    await submit(notify, "case-c")
    await notify.handlers.on_referral_closed(referral_closed("case-c", "settled"))
    await notify.handlers.on_case_closed(case_closed("case-c", "settled"))
    assert [s.template for s in notify.provider.sent] == ["case_received", "case_closed"]


async def test_a_message_left_sending_after_the_provider_took_it_is_not_resent(
    notify: Notify,
) -> None:
    event = case_submitted("case-s", key=await notify.vault.create("case-s"))
    await notify.handlers.on_case_submitted(event)
    [record] = await notify.messages.for_case("case-s")
    # The crash: the provider accepted it, but our record still says `sending`.
    await notify.messages._collection.update_one(
        {"_id": record["_id"]}, {"$set": {"status": "sending"}}
    )
    assert await notify.dispatcher.resolve_in_sending() == 1  # what a restart does
    await notify.handlers.on_case_submitted(event)  # and the redelivered event
    assert len(notify.provider.sent) == 1
    [record] = await notify.messages.for_case("case-s")
    assert record["status"] == "sent"
    assert record["provider_message_id"] == "fake-1"


async def test_a_message_left_sending_before_the_provider_took_it_is_sent_once(
    notify: Notify,
) -> None:
    notify.rewire(RecordingProvider([ProviderUnavailableError("connection reset")] * 3))
    event = case_submitted("case-t", key=await notify.vault.create("case-t"))
    with pytest.raises(ProviderUnavailableError):
        await notify.handlers.on_case_submitted(event)
    [record] = await notify.messages.for_case("case-t")
    assert record["status"] == "sending"  # it may have reached the provider: not resent blind
    assert [h.get("error") for h in record["status_history"][-3:]] == ["connection reset"] * 3

    notify.rewire(notify.provider)  # the provider is back; the consumer retries the event
    await notify.handlers.on_case_submitted(event)
    await notify.handlers.on_case_submitted(event)
    assert len(notify.provider.sent) == 1
    [record] = await notify.messages.for_case("case-t")
    assert record["status"] == "sent"


async def test_retry_after_is_respected_inline_and_by_deferral(notify: Notify) -> None:
    notify.rewire(
        RecordingProvider(
            [ProviderUnavailableError("HTTP 429", retry_after=2.0, maybe_accepted=False)]
        )
    )
    await submit(notify, "case-q")
    assert notify.sleeps.waits == [2.0]
    [record] = await notify.messages.for_case("case-q")
    assert record["status"] == "sent"

    slow = RecordingProvider(
        [ProviderUnavailableError("HTTP 429", retry_after=3600, maybe_accepted=False)]
    )
    notify.rewire(slow)
    await notify.handlers.on_deadline_approaching(deadline_approaching("case-q"))
    deferred = [r for r in await notify.messages.for_case("case-q") if r["status"] != "sent"]
    assert [r["status"] for r in deferred] == ["scheduled"]
    assert deferred[0]["send_after"] == notify.clock.now + timedelta(seconds=3600)
    assert await notify.dispatcher.run_due() == 0
    notify.clock.advance(seconds=3600)
    assert await notify.dispatcher.run_due() == 1
    assert [s.template for s in slow.sent] == ["deadline_approaching"]


async def test_a_permanent_refusal_is_recorded_with_the_providers_reason(notify: Notify) -> None:
    refusing = RecordingProvider(
        [ProviderRejectedError("HTTP 400 21211 Invalid 'To' Phone Number")]
    )
    notify.rewire(refusing)
    event = case_submitted("case-p", key=await notify.vault.create("case-p"))
    await notify.handlers.on_case_submitted(event)
    await notify.handlers.on_case_submitted(event)
    [record] = await notify.messages.for_case("case-p")
    assert record["status"] == "failed"
    assert record["reason"] == "HTTP 400 21211 Invalid 'To' Phone Number"
    assert refusing.calls == 1


async def test_no_sms_without_consent_or_after_erasure(notify: Notify) -> None:
    await submit(notify, "case-n", purposes=(ConsentPurpose.LEGAL_REFERRAL,))
    [record] = await notify.messages.for_case("case-n")
    assert record["status"] == "suppressed"
    assert record["to"] is None

    await submit(notify, "case-e")
    await notify.handlers.on_case_erased(case_erased("case-e"))
    await notify.handlers.on_referral_accepted(referral_accepted("case-e"))  # too late
    assert [s.template for s in notify.provider.sent] == ["case_received"]
    assert all(r["to"] is None for r in await notify.messages.for_case("case-e"))
    assert await notify.profiles.state("case-e") is False


async def test_a_deferred_sms_is_not_sent_once_the_key_is_destroyed_though_notify_kept_it(
    notify: Notify,
) -> None:
    await submit(notify, "case-d")
    slow = RecordingProvider(
        [ProviderUnavailableError("HTTP 429", retry_after=3600, maybe_accepted=False)]
    )
    notify.rewire(slow)
    await notify.handlers.on_deadline_approaching(deadline_approaching("case-d"))
    assert len(notify.keys) == 1  # read when the case came in, and kept
    # Intake erases the case; its `case erased` has not reached notify yet.
    assert await notify.vault.destroy("case-d")
    notify.clock.advance(seconds=3600)
    assert await notify.dispatcher.run_due() == 0
    assert slow.sent == []
    [deferred] = [r for r in await notify.messages.for_case("case-d") if r["status"] != "sent"]
    assert (deferred["status"], deferred["reason"]) == ("suppressed", "case erased")


async def test_an_event_that_overtakes_its_case_is_handled_when_the_case_arrives(
    notify: Notify,
) -> None:
    accepted = referral_accepted("case-later")
    await notify.handlers.on_referral_accepted(accepted)
    await notify.handlers.on_referral_accepted(accepted)  # redelivered meanwhile
    assert notify.provider.sent == []
    submitted = case_submitted("case-later", key=await notify.vault.create("case-later"))
    await notify.handlers.on_case_submitted(submitted)
    assert [s.template for s in notify.provider.sent] == ["case_received", "referral_accepted"]
    await notify.handlers.on_case_submitted(submitted)  # redelivered: nothing replayed
    assert len(notify.provider.sent) == 2


async def test_delivery_receipts_settle_the_message(notify: Notify) -> None:
    await submit(notify, "case-d")
    assert await notify.conversations.receipt("fake-1", "sent", None)
    assert await notify.conversations.receipt("fake-1", "delivered", None)
    assert await notify.conversations.receipt("fake-1", "delivered", None)  # repeated
    assert not await notify.conversations.receipt("fake-999", "delivered", None)
    [record] = await notify.messages.for_case("case-d")
    assert record["status"] == "delivered"
    assert [h["status"] for h in record["status_history"]][-1:] == ["delivered"]
    assert sum(h["status"] == "delivered" for h in record["status_history"]) == 1
    raw = await notify.messages._collection.find_one({"_id": record["_id"]})
    assert raw is not None
    types = [entry_event(e).type for e in raw["outbox"]]
    assert types.count("org.lintas.notification.sms_delivery_reported") == 1


async def race_two_dispatchers(notify: Notify) -> None:
    """This process's schedule loop and another process's, each asking four times."""
    rival = Dispatcher(
        notify.messages, notify.preferences, notify.provider, notify.vault, clock=notify.clock
    )
    await asyncio.gather(*(d.run_due() for d in [notify.dispatcher, rival] * 4))


async def test_racing_dispatchers_send_a_message_once(notify: Notify) -> None:
    notify.clock.advance(hours=12)  # 22:00 in Jakarta: the SMS waits in the schedule
    await submit(notify, "case-race")
    notify.clock.advance(hours=10)  # 08:00: the consumer's retry and the loop both try
    await race_two_dispatchers(notify)
    assert len(notify.provider.sent) == 1
    [record] = await notify.messages.for_case("case-race")
    assert (record["status"], record["attempts"]) == ("sent", 1)


async def test_a_claim_left_by_a_killed_process_is_taken_over_once(notify: Notify) -> None:
    # Found by `make faults`: a process killed right after its claim. The claim and the
    # `sending` record are one update with a lease: nobody else takes the attempt while
    # the lease holds, and after it the provider is asked before it is taken over.
    notify.clock.advance(hours=12)  # 22:00 in Jakarta: the SMS waits in the schedule
    await submit(notify, "case-orphan")
    [record] = await notify.messages.for_case("case-orphan")
    notify.clock.advance(hours=10)  # 08:00: a process claims it, and dies at once
    assert await notify.messages.claim(record["_id"], notify.clock.now) is not None
    assert await notify.messages.claim(record["_id"], notify.clock.now) is None  # leased

    assert await notify.dispatcher.run_due() == 0  # not due: an attempt holds it
    assert await notify.dispatcher.resolve_in_sending() == 0  # its lease still holds
    notify.clock.advance(seconds=LEASE.total_seconds())
    assert await notify.dispatcher.resolve_in_sending() == 1  # not at the provider: again
    await race_two_dispatchers(notify)
    assert len(notify.provider.sent) == 1
    [record] = await notify.messages.for_case("case-orphan")
    assert (record["status"], record["attempts"]) == ("sent", 2)


async def test_a_send_recorded_meanwhile_is_not_reopened_by_a_late_claim(
    notify: Notify,
) -> None:
    notify.clock.advance(hours=12)  # 22:00 in Jakarta: the SMS waits in the schedule
    await submit(notify, "case-late")
    notify.clock.advance(hours=10)
    [record] = await notify.messages.for_case("case-late")
    message_id, now = record["_id"], notify.clock.now
    assert await notify.messages.claim(message_id, now) is not None  # process A sends
    # Process B found it `sending` and asked the provider before A's send landed there;
    # A records `sent` just before B's claim of the next attempt goes in.
    await notify.messages.finish(message_id, SmsStatus.SENT, now, from_statuses=[SmsStatus.SENDING])
    later = now + LEASE
    assert await notify.messages.claim(message_id, later, from_status=SmsStatus.SENDING) is None
    [record] = await notify.messages.for_case("case-late")
    assert record["status"] == "sent"  # not put back to `sending`, to be recorded again
    assert [h["status"] for h in record["status_history"]].count("sent") == 1


async def test_a_corrected_phone_and_language_are_used_for_the_next_sms(notify: Notify) -> None:
    key = await notify.vault.create("case-fix")
    await notify.handlers.on_case_submitted(case_submitted("case-fix", key=key))
    corrected = with_worker(
        case_submitted("case-fix", key=key, phone="+6281277778888", language="en"),
    )
    worker = corrected.data["worker"]
    await notify.handlers.on_details_corrected(
        make_event(
            CaseDetailsCorrected(
                case_id="case-fix",
                worker=WorkerInfo.model_validate(worker),
                corrected_at=notify.clock.now,
            ),
            source="/lintas/intake",
            subject="case-fix",
        )
    )
    await notify.handlers.on_referral_accepted(referral_accepted("case-fix"))
    first, second = notify.provider.sent
    assert (first.to, first.language) == ("+6281234567890", "id")
    assert (second.to, second.language) == ("+6281277778888", "en")


async def test_old_news_is_recorded_but_not_sent(notify: Notify) -> None:
    await submit(notify, "case-old")
    accepted = referral_accepted("case-old")
    stale = accepted.model_copy(update={"time": notify.clock.now - timedelta(days=8)})
    await notify.handlers.on_referral_accepted(stale)
    await notify.handlers.on_deadline_approaching(
        deadline_approaching("case-old", notify.clock.now.date() - timedelta(days=1))
    )
    assert [s.template for s in notify.provider.sent] == ["case_received"]
    records = {r["template"]: r for r in await notify.messages.for_case("case-old")}
    assert records["referral_accepted"]["status"] == "suppressed"
    assert records["referral_accepted"]["reason"] == "event older than 7 days"
    assert records["deadline_approaching"]["reason"] == "the deadline has passed"
