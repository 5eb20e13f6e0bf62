"""Opt-out changes through the shared unit of work, on the in-memory store: the latest
change wins, an older or redundant one writes nothing, and the events ride along."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from lintas_notify.adapters.preferences import PreferenceCodec, erased_front
from lintas_notify.domain.preference import Preference
from lintas_shared.events import SmsPreferenceTexted, make_event
from lintas_shared.outbox import outbox_entry
from lintas_shared.topics import NOTIFICATIONS
from lintas_shared.unit_of_work import Decision, InMemoryVersionedDocuments, Outgoing, UnitOfWork

AT = datetime(2026, 9, 16, 3, 0, tzinfo=UTC)


def test_the_latest_change_wins_and_a_repeated_one_changes_nothing() -> None:
    held = Preference("hash-1", opted_out=False, changed_at=AT, channel="api")
    stopped = held.change(True, AT + timedelta(minutes=1), "sms")
    assert stopped == Preference("hash-1", True, AT + timedelta(minutes=1), "sms")
    assert stopped.change(True, AT + timedelta(minutes=2), "api") is None  # same state
    assert stopped.change(False, AT, "api") is None  # older than what is held
    assert stopped.change(False, AT + timedelta(minutes=2), "api") is not None


async def test_a_change_is_one_versioned_write_with_its_announcement() -> None:
    documents = InMemoryVersionedDocuments(name="preferences")
    committed: list[tuple[str, int, int]] = []
    work = UnitOfWork(
        documents,
        PreferenceCodec(),
        on_commit=lambda doc_id, version, entries: committed.append(
            (doc_id, version, len(entries))
        ),
    )
    await work.add(Preference("hash-1", False, AT, "api"))
    announcement = make_event(
        SmsPreferenceTexted(case_id="case-1", opted_out=True, changed_at=AT),
        source="/lintas/notify",
        subject="case-1",
    )

    def stop(at: datetime) -> Callable[[Preference], Decision[Preference] | None]:
        def decide(current: Preference) -> Decision[Preference] | None:
            changed = current.change(True, at, "sms")
            return None if changed is None else Decision(changed, [Outgoing("t", announcement)])

        return decide

    first = await work.change("hash-1", stop(AT + timedelta(minutes=1)))
    again = await work.change("hash-1", stop(AT + timedelta(minutes=2)))
    assert (first.changed, again.changed) == (True, False)
    stored = documents.docs["hash-1"]
    assert (stored["opted_out"], stored["channel"], stored["version"]) == (True, "sms", 2)
    assert [e["id"] for e in stored["outbox"]] == [announcement.id]
    assert committed == [("hash-1", 2, 1)]  # the relay was handed the outbox once
    assert documents.writes == 2  # the insert and the one change


def test_an_erasure_removes_only_the_cases_announcements_at_the_front_of_the_outbox() -> None:
    def entry(n: int, case_id: str) -> dict[str, object]:
        announced = SmsPreferenceTexted(case_id=case_id, opted_out=True, changed_at=AT)
        event = make_event(announced, source="/lintas/notify", subject=case_id)
        return {**outbox_entry(NOTIFICATIONS, event), "id": f"e{n}"}

    outbox = [entry(1, "y"), entry(2, "y"), entry(3, "x"), entry(4, "y")]
    assert [e["id"] for e in erased_front(outbox, "y")] == ["e1", "e2"]
    assert erased_front(outbox, "x") == []  # behind another case's entry: it stays
    assert erased_front([], "y") == []
