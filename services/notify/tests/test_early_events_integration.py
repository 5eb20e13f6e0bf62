"""Events kept in their case's document until the case is known (real MongoDB-protocol
server): no other collection, and nothing read for a case nothing waited for."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from lintas_notify.adapters.case_profiles import CaseProfile
from lintas_notify.adapters.early_events import MongoEarlyEvents
from lintas_notify.domain.stage import Stage
from lintas_shared.envelope import CloudEvent
from lintas_shared.events import CaseSubmitted, parse_payload
from lintas_shared.mongo import Document
from pymongo import AsyncMongoClient

from tests.support.fixtures import case_submitted
from tests.support.notify import AT, Notify, referral_accepted, referral_offered

pytestmark = pytest.mark.integration


async def test_each_case_keeps_its_own_events_and_gets_them_oldest_first(
    mongo: AsyncMongoClient[Document], notify: Notify
) -> None:
    profiles = notify.profiles
    accepted, offered = referral_accepted("case-a"), referral_offered("case-a")
    assert await profiles.keep_waiting("case-a", accepted, AT + timedelta(seconds=2)) is None
    assert await profiles.keep_waiting("case-a", offered, AT) is None
    assert await profiles.keep_waiting("case-a", offered, AT + timedelta(seconds=5)) is None
    await profiles.keep_waiting("case-b", referral_accepted("case-b"), AT)
    assert await profiles.state("case-a") is None  # not known yet: only events wait
    raw = await mongo[notify.database]["cases"].find_one({"_id": "case-a"})
    assert raw is not None
    assert len(raw["waiting"]) == 2  # the redelivered one once

    submitted = parse_payload(case_submitted("case-a"), CaseSubmitted)
    profile, waiting = await profiles.add(submitted, "hash-a")
    assert isinstance(profile, CaseProfile)
    assert [w.event.dedupe_key for w in waiting] == [offered.dedupe_key, accepted.dedupe_key]
    await profiles.done("case-a", waiting[0])
    await profiles.done("case-a", waiting[0])  # a second handling changes nothing
    _, left = await profiles.add(submitted, "hash-a")  # a redelivery finds what is left
    assert [w.event.dedupe_key for w in left] == [accepted.dedupe_key]
    await profiles.done("case-a", left[0])
    assert (await profiles.add(submitted, "hash-a"))[1] == []
    # Once the profile is there, an event is not kept: the caller gets the profile.
    late = referral_accepted("case-a", country="MY")
    assert isinstance(await profiles.keep_waiting("case-a", late, AT), CaseProfile)
    assert "early_events" not in await mongo[notify.database].list_collection_names()


async def test_an_offer_that_misses_its_profile_by_a_moment_still_moves_the_stage(
    notify: Notify, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The case's `submitted` (other topic, other consumer) lands between the offer's
    # update, which found no profile, and its read: the offer must not be lost.
    submitted = parse_payload(case_submitted("case-r"), CaseSubmitted)
    set_stage = notify.profiles.set_stage

    async def profile_arrives_after_the_miss(case_id: str, stage: Stage, at: datetime) -> bool:
        moved = await set_stage(case_id, stage, at)
        if not moved and await notify.profiles.state(case_id) is None:
            await notify.profiles.add(submitted, "hash-r")
        return moved

    monkeypatch.setattr(notify.profiles, "set_stage", profile_arrives_after_the_miss)
    offered_at = submitted.submitted_at + timedelta(seconds=1)
    await notify.handlers.on_referral_offered(referral_offered("case-r", at=offered_at))
    profile = await notify.profiles.state("case-r")
    assert isinstance(profile, CaseProfile)
    assert profile.stage is Stage.OFFERED


async def test_erasure_drops_the_waiting_events(
    mongo: AsyncMongoClient[Document], notify: Notify
) -> None:
    await notify.profiles.keep_waiting("case-e", referral_offered("case-e"), AT)
    await notify.profiles.erase("case-e")
    assert await notify.profiles.keep_waiting("case-e", referral_accepted("case-e"), AT) is False
    raw = await mongo[notify.database]["cases"].find_one({"_id": "case-e"})
    assert raw == {"_id": "case-e", "erased": True}


async def test_events_kept_by_the_previous_version_move_into_their_case_at_start(
    mongo: AsyncMongoClient[Document], notify: Notify
) -> None:
    database = mongo[notify.database]
    event = referral_accepted("case-old")
    await database["early_events"].insert_one(
        {
            "_id": event.dedupe_key,
            "case_id": "case-old",
            "event": event.model_dump(mode="json"),
            "kept_at": AT,
        }
    )
    await database["early_events_by_case"].insert_one(
        {"_id": "case-old", "keys": [event.dedupe_key]}
    )
    legacy = MongoEarlyEvents(database["early_events"])
    assert await legacy.migrate(notify.profiles, notify.handlers.replay) == 1
    assert await legacy.migrate(notify.profiles, notify.handlers.replay) == 0  # nothing more
    names = await database.list_collection_names()
    assert "early_events" not in names
    assert "early_events_by_case" not in names

    key = await notify.vault.create("case-old")
    await notify.handlers.on_case_submitted(case_submitted("case-old", key=key))
    assert [s.template for s in notify.provider.sent] == ["case_received", "referral_accepted"]
    raw = await database["cases"].find_one({"_id": "case-old"})
    assert raw is not None
    assert raw["waiting"] == []


async def test_an_event_kept_by_the_previous_version_for_a_known_case_is_handled_at_start(
    mongo: AsyncMongoClient[Document], notify: Notify
) -> None:
    # Review item 9: an old instance kept the event, and the case's `submitted` event was
    # handled (by a new instance) before the move: the event is handled, not dropped.
    database = mongo[notify.database]
    key = await notify.vault.create("case-known")
    await notify.handlers.on_case_submitted(case_submitted("case-known", key=key))
    event = referral_accepted("case-known")
    await database["early_events"].insert_one(
        {
            "_id": event.dedupe_key,
            "case_id": "case-known",
            "event": event.model_dump(mode="json"),
            "kept_at": AT,
        }
    )
    legacy = MongoEarlyEvents(database["early_events"])

    async def failing(_: CloudEvent) -> None:
        raise RuntimeError("store down")

    assert await legacy.migrate(notify.profiles, failing) == 0
    assert await database["early_events"].count_documents({}) == 1  # kept for next start
    assert await legacy.migrate(notify.profiles, notify.handlers.replay) == 1
    assert [s.template for s in notify.provider.sent] == ["case_received", "referral_accepted"]
    assert "early_events" not in await database.list_collection_names()
