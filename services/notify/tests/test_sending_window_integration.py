"""Messages in `sending` on the real MongoDB-protocol server: none stays there for ever,
an attempt whose lease ran out moves nothing of the next one, and attempts under way
count toward her daily limit."""

from __future__ import annotations

import pytest
from lintas_notify.adapters.message_repository import LEASE
from lintas_notify.dispatch import Dispatcher
from lintas_notify.domain.message import OutgoingSms, SmsStatus
from lintas_notify.ports import ProviderError, ProviderRejectedError, ProviderUnavailableError

from tests.support.fixtures import case_submitted
from tests.support.notify import (
    Notify,
    RecordingProvider,
    deadline_approaching,
    referral_accepted,
    referral_closed,
    referral_progressed,
)

pytestmark = pytest.mark.integration


class Crashing(RecordingProvider):
    """A send that dies with something other than a provider error (a bug, a lost key
    vault connection, a cancelled task), `crashes` times: the attempt's lease stays."""

    def __init__(self, crashes: int, failures: list[ProviderError] | None = None) -> None:
        super().__init__(failures)
        self.crashes = crashes

    async def send(self, sms: OutgoingSms) -> str:
        if self.crashes:
            self.crashes -= 1
            raise RuntimeError("stopped mid-send")
        return await super().send(sms)


async def test_a_message_a_stopped_attempt_left_sending_is_sent_when_its_lease_runs_out(
    notify: Notify,
) -> None:
    provider = Crashing(1)
    notify.rewire(provider)
    event = case_submitted("case-stuck", key=await notify.vault.create("case-stuck"))
    with pytest.raises(RuntimeError):
        await notify.handlers.on_case_submitted(event)
    await notify.handlers.on_case_submitted(event)  # the retry finds a live lease: acked
    [record] = await notify.messages.for_case("case-stuck")
    assert record["status"] == "sending"
    assert await notify.dispatcher.run_due() == 0  # the lease still holds

    notify.clock.advance(seconds=LEASE.total_seconds())
    assert await notify.dispatcher.run_due() == 1  # due: the provider asked, then sent
    assert await notify.dispatcher.run_due() == 0
    assert [s.id for s in provider.sent] == [record["_id"]]
    [record] = await notify.messages.for_case("case-stuck")
    assert (record["status"], record["attempts"]) == ("sent", 2)
    assert "due_at" not in record


async def test_a_restart_within_the_lease_leaves_the_message_to_the_schedule(
    notify: Notify,
) -> None:
    # Instance A is killed mid-send and restarts before its lease ran out: its start-up
    # resolution skips the message, the redelivered event finds it leased.
    event = case_submitted("case-kill", key=await notify.vault.create("case-kill"))
    notify.rewire(Crashing(1))
    with pytest.raises(RuntimeError):
        await notify.handlers.on_case_submitted(event)
    notify.rewire(RecordingProvider())  # the restarted process
    assert await notify.dispatcher.resolve_in_sending() == 0
    await notify.handlers.on_case_submitted(event)
    notify.clock.advance(seconds=LEASE.total_seconds() + 1)
    assert await notify.dispatcher.run_due() == 1
    [record] = await notify.messages.for_case("case-kill")
    assert record["status"] == "sent"


async def test_a_stale_resolution_does_not_reschedule_a_message_another_attempt_claimed(
    notify: Notify,
) -> None:
    notify.rewire(RecordingProvider([ProviderUnavailableError("connection reset")] * 3))
    event = case_submitted("case-two", key=await notify.vault.create("case-two"))
    with pytest.raises(ProviderUnavailableError):
        await notify.handlers.on_case_submitted(event)  # the lease is given up
    messages, clock = notify.messages, notify.clock

    class ClaimedMeanwhile(RecordingProvider):
        """B asks the provider after A's retry claimed the next attempt, before A's
        send reached the provider."""

        async def find_sent(self, client_reference: str) -> str | None:
            taken = await messages.claim(client_reference, clock.now, from_status=SmsStatus.SENDING)
            assert taken is not None
            return await super().find_sent(client_reference)

    b = Dispatcher(messages, notify.preferences, ClaimedMeanwhile(), notify.vault, clock=clock)
    assert await b.resolve_in_sending() == 1
    [record] = await messages.for_case("case-two")
    assert record["status"] == "sending"  # A holds it: not put back in the schedule
    assert await b.run_due() == 0  # so nobody sends it a second time meanwhile
    assert notify.provider.sent == []


async def test_a_holder_whose_lease_ran_out_moves_nothing_of_the_next_attempt(
    notify: Notify,
) -> None:
    notify.clock.advance(hours=12)  # 22:00 in Jakarta: the SMS waits in the schedule
    await notify.handlers.on_case_submitted(
        case_submitted("case-slow", key=await notify.vault.create("case-slow"))
    )
    [record] = await notify.messages.for_case("case-slow")
    message_id = record["_id"]
    notify.clock.advance(hours=10)
    now = notify.clock.now
    a = await notify.messages.claim(message_id, now)
    assert a is not None
    later = now + LEASE
    b = await notify.messages.claim(message_id, later, from_status=SmsStatus.SENDING)
    assert b is not None
    assert a["claim_id"] != b["claim_id"]
    # A, slow, wakes up: it neither releases B's lease nor finishes or defers the message.
    messages = notify.messages
    assert not await messages.note_attempt(
        message_id, later, "timeout", another=False, claim=a["claim_id"]
    )
    assert not await messages.finish(
        message_id,
        SmsStatus.FAILED,
        later,
        from_statuses=[SmsStatus.SENDING],
        reason="refused",
        claim=a["claim_id"],
    )
    assert not await messages.defer(
        message_id, later, "x", later, from_status=SmsStatus.SENDING, claim=a["claim_id"]
    )
    assert await messages.claim(message_id, later, from_status=SmsStatus.SENDING) is None
    stored = await messages.get(message_id)
    assert stored is not None
    assert (stored["status"], stored["claim_id"]) == ("sending", b["claim_id"])
    # B's own changes go through.
    assert await messages.note_attempt(
        message_id, later, "timeout", another=True, claim=b["claim_id"]
    )


async def test_attempts_under_way_count_toward_her_daily_limit_and_a_refusal_does_not(
    notify: Notify,
) -> None:
    # One refused (failed: not counted), three stopped mid-send (`sending`: counted).
    provider = Crashing(0, [ProviderRejectedError("invalid number")])
    notify.rewire(provider)
    await notify.handlers.on_case_submitted(
        case_submitted("case-day", key=await notify.vault.create("case-day"))
    )
    provider.crashes = 3
    for event in (
        referral_accepted("case-day"),
        referral_progressed("case-day"),
        deadline_approaching("case-day"),
    ):
        with pytest.raises(RuntimeError):
            await notify.handlers.replay(event)
    await notify.handlers.replay(referral_closed("case-day"))
    records = {r["template"]: r for r in await notify.messages.for_case("case-day")}
    assert records["case_received"]["status"] == "failed"
    assert [records[t]["status"] for t in ("referral_accepted", "documents_needed")] == [
        "sending",
        "sending",
    ]
    closed = records["case_closed"]
    assert closed["status"] == "scheduled"
    assert closed["status_history"][0]["reason"] == "worker daily limit"
    assert provider.sent == []


async def test_a_message_the_previous_version_left_sending_comes_due_after_start_up(
    notify: Notify,
) -> None:
    event = case_submitted("case-prev", key=await notify.vault.create("case-prev"))
    notify.rewire(Crashing(1))
    with pytest.raises(RuntimeError):
        await notify.handlers.on_case_submitted(event)
    collection = notify.messages._collection
    # As the previous version left it: no `due_at`, no claim token.
    await collection.update_many({}, {"$unset": {"due_at": "", "claim_id": ""}})
    await notify.messages.ensure_indexes()
    notify.rewire(RecordingProvider())
    notify.clock.advance(seconds=LEASE.total_seconds())
    assert await notify.dispatcher.run_due() == 1
    [record] = await notify.messages.for_case("case-prev")
    assert record["status"] == "sent"
