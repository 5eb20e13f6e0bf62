"""SMS records in MongoDB: one document per message, its status history and its outbox.

Every transition is one atomic conditional single-document update, as MongoDB 7 makes
it: the condition on the current status (and, for a claim, on the lease) is what makes it
exclusive, and each one bumps the document's `version`, so it also moves any unit of work
(`lintas_shared.unit_of_work`) that read the message before. Events ride in the document's
`outbox` and the relay is woken with it (`on_commit`). Only a move to a final status
carries events, and a message makes that move once, so until then its outbox is empty.
A `sent` record made at the version its sender read therefore leaves exactly its own
entries in the outbox, which the relay is handed with no read back; a batch's such
records go to the store as one `update` (`CoalescingUpdater`), each writing a token of
its own (`final_move`) by which it learns whether it was made when the batch matched
fewer. A message changed since that version is recorded by `find_one_and_update`, which
returns its outbox.

Every question that is not by `_id` is served by a secondary index on the message itself:
- `due_at` (set while a notification waits in the schedule, and while one is `sending`:
  then it is the lease's end, so a message whose attempt stopped comes due again):
  "due before now", a range;
- `status` with `send_after`: messages left `sending` whose lease (`lease_until`) ran
  out. A claim is one `find_one_and_update` by `_id` on a due `scheduled` message (or one
  left `sending`) that no live lease holds, taking a lease for the attempt and a new
  `claim_id`: every later change of that attempt (`note_attempt`, `defer` and `finish`
  from `sending`) names it, so a holder whose lease ran out changes nothing;
- `phone_hash` with `counted_at` (set when an attempt is claimed, kept once `sent`) and
  `sent_at`: her notifications sent or being sent (the daily limit);
- `provider_message_id`: the message a delivery receipt names;
- `case_id`, `case_reference`: a case's messages and replies (erasure, operators).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from lintas_shared.envelope import CloudEvent
from lintas_shared.mongo import CoalescingInserter, CoalescingUpdater, Document, TurnBatcher
from lintas_shared.outbox import OUTBOX_FIELD, outbox_entry
from lintas_shared.topics import NOTIFICATIONS
from lintas_shared.unit_of_work import (
    OUTBOX_SINCE_FIELD,
    VERSION_FIELD,
    MongoVersionedDocuments,
    OnCommit,
)
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from lintas_notify.domain.message import MessageKind, OutgoingSms, SmsStatus
from lintas_notify.ports import provider_key, sms_from_document

__all__ = ["LEASE", "MongoMessageRepository", "provider_key", "sms_from_document"]

#: How long a claim holds a message `sending`: far above one attempt's inline retries.
#: A message still `sending` after it belongs to a process that stopped mid-attempt; it is
#: taken over only after the provider was asked whether it has the message.
LEASE = timedelta(minutes=2)
#: Side collections of the previous version, replaced by fields of the message (dropped
#: at start-up once the messages carry what they held).
_FORMER_SIDE_COLLECTIONS = ("claims", "timers", "worker_sends", "provider_ids")


def _entry(status: SmsStatus, now: datetime, **extra: object) -> Document:
    return {"status": status.value, "at": now, **{k: v for k, v in extra.items() if v is not None}}


def _document(
    sms: OutgoingSms, status: SmsStatus, now: datetime, send_after: datetime, **extra: object
) -> Document:
    return {
        "_id": sms.id,
        "kind": sms.kind.value,
        "case_id": sms.case_id,
        "case_reference": sms.case_reference,
        "to": sms.to_sealed,
        "phone_hash": sms.phone_hash,
        "body": sms.body,
        "language": sms.language,
        "template": sms.template,
        "encoding": sms.encoding,
        "segments": sms.segments,
        "causing_event": sms.causing_event,
        "status": status.value,
        "status_history": [_entry(status, now, **extra)],
        "send_after": send_after,
        "attempts": 0,
        "provider": None,
        "provider_message_id": None,
        "created_at": now,
        "updated_at": now,
        VERSION_FIELD: 1,
        OUTBOX_FIELD: [],
    }


def _lease_free(now: datetime) -> Document:
    """The filter of a message no live attempt holds: no lease, or one that ran out."""
    return {"$or": [{"lease_until": {"$lte": now}}, {"lease_until": {"$exists": False}}]}


def _claim_id() -> str:
    """The token of one claimed attempt."""
    return uuid.uuid4().hex


def _held_by(claim: str | None) -> Document:
    """The filter of a message still held by the attempt `claim` (a record of the
    previous version has no token: its transitions are not narrowed)."""
    return {} if claim is None else {"claim_id": claim}


#: Phones one query of recent sends asks for at most.
SENT_TIMES_QUERY_SIZE = 50


#: The token of the write that made a message's final move (see `_transition`).
FINAL_MOVE_FIELD = "final_move"


class MongoMessageRepository:
    """SMS records on MongoDB (and the local FerretDB); implements `MessageStore`."""

    def __init__(
        self, collection: AsyncCollection[Document], on_commit: OnCommit | None = None
    ) -> None:
        self._collection = collection
        self._inserts = CoalescingInserter(collection)  # a batch's new messages: one command
        self._moves = CoalescingUpdater(collection)  # a batch's `sent` records: one command
        self._sent_times: TurnBatcher[tuple[str, datetime], list[datetime]] = TurnBatcher(
            self._sent_times_query, SENT_TIMES_QUERY_SIZE
        )
        #: The versioned documents the outbox relay publishes from.
        self.documents = MongoVersionedDocuments(collection)
        self._on_commit = on_commit

    async def ensure_indexes(self) -> None:
        """The indexes every query reads, and the previous version's data brought over
        (idempotent: each step touches only documents that still lack what it adds)."""
        await self._collection.create_index([("status", ASCENDING), ("send_after", ASCENDING)])
        await self._collection.create_index("provider_message_id")
        await self._collection.create_index("case_id")
        await self._collection.create_index([("phone_hash", ASCENDING), ("sent_at", ASCENDING)])
        await self._collection.create_index([("phone_hash", ASCENDING), ("counted_at", ASCENDING)])
        await self._collection.create_index("due_at")
        # Erasure's replies that named the case (STATUS); compound: no twin index to feed.
        await self._collection.create_index([("case_reference", ASCENDING), ("kind", ASCENDING)])
        await self.documents.ensure_indexes()
        await self._collection.update_many(
            {VERSION_FIELD: {"$exists": False}}, {"$set": {VERSION_FIELD: 1}}
        )
        waiting = self._collection.find(
            {
                "status": SmsStatus.SCHEDULED.value,
                "kind": MessageKind.NOTIFICATION.value,
                "due_at": {"$exists": False},
            },
            {"send_after": 1},
        )
        async for doc in waiting:
            await self._collection.update_one(
                {"_id": doc["_id"], "status": SmsStatus.SCHEDULED.value},
                {"$set": {"due_at": doc["send_after"]}},
            )
        # A notification left `sending` comes due when its lease runs out (the loop asks
        # the provider, then sends): the previous version's carried no `due_at`.
        left = self._collection.find(
            {
                "status": SmsStatus.SENDING.value,
                "kind": MessageKind.NOTIFICATION.value,
                "due_at": {"$exists": False},
            },
            {"lease_until": 1, "send_after": 1},
        )
        async for doc in left:
            await self._collection.update_one(
                {"_id": doc["_id"], "status": SmsStatus.SENDING.value},
                {"$set": {"due_at": doc.get("lease_until") or doc["send_after"]}},
            )
        database, name = self._collection.database, self._collection.name
        existing = set(await database.list_collection_names())
        for side in _FORMER_SIDE_COLLECTIONS:
            if f"{name}_{side}" in existing:
                await database.drop_collection(f"{name}_{side}")

    def on_commit(self, hook: OnCommit) -> None:
        """Wake the outbox relay (its `on_commit`) after each write that adds events."""
        self._on_commit = hook

    def _committed(self, doc: Document | None) -> None:
        if doc is not None and doc.get(OUTBOX_FIELD) and self._on_commit is not None:
            self._on_commit(doc["_id"], int(doc.get(VERSION_FIELD, 1)), list(doc[OUTBOX_FIELD]))

    async def schedule(
        self,
        sms: OutgoingSms,
        now: datetime,
        status: SmsStatus,
        *,
        current_country: str | None = None,
        time_zone: str | None = None,
        send_after: datetime | None = None,
        reason: str | None = None,
    ) -> tuple[Document, bool]:
        """Record the decision to send; returns the document and whether this call made it.

        `scheduled` waits in the schedule until `send_after` (with `reason`, a rule's "not
        now"); `sending` is the decision and the claim of its first attempt in one insert
        (the rules allowed it at once, or an immediate reply). The unique _id (cause +
        template) makes this a one-time decision: a redelivered event gets the existing one.
        """
        due = send_after or now
        doc = _document(sms, SmsStatus.SCHEDULED, now, due)
        doc["current_country"], doc["time_zone"] = current_country, time_zone
        if reason is not None:
            doc["status_history"] = [
                _entry(SmsStatus.SCHEDULED, now, reason=reason, until=send_after)
            ]
        if status is SmsStatus.SENDING:
            doc.update(
                status=status.value,
                attempts=1,
                lease_until=now + LEASE,
                claim_id=_claim_id(),
                counted_at=now,
            )
            doc["status_history"].append(_entry(SmsStatus.SENDING, now))
            if sms.kind is MessageKind.NOTIFICATION:
                doc["due_at"] = now + LEASE  # due again should this attempt stop
        elif sms.kind is MessageKind.NOTIFICATION:
            doc["due_at"] = due
        try:
            await self._inserts.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.get(sms.id)
            if existing is not None:
                return existing, False
            raise
        doc.pop(OUTBOX_FIELD)
        return doc, True

    async def record_suppressed(self, sms: OutgoingSms, reason: str, now: datetime) -> None:
        """Record a message that must not be sent, and why (idempotent); no phone kept."""
        doc = _document(sms, SmsStatus.SUPPRESSED, now, now, reason=reason)
        doc["to"], doc["reason"] = None, reason
        try:
            await self._inserts.insert_one(doc)
        except DuplicateKeyError:
            pass

    async def get(self, message_id: str) -> Document | None:
        """One message without its outbox."""
        return await self._collection.find_one({"_id": message_id}, {OUTBOX_FIELD: 0})

    async def claim(
        self, message_id: str, now: datetime, *, from_status: SmsStatus = SmsStatus.SCHEDULED
    ) -> Document | None:
        """Start the next attempt of a due `scheduled` message (or of one left `sending`,
        once the provider said it does not have it); None if someone else has it.

        One `find_one_and_update` on the message: it matches only while the message is
        in `from_status`, due, and no live attempt's lease holds it; it takes the lease
        and a new `claim_id`. Of two processes (or the consumer and the schedule loop) one
        matches. Only notifications are claimed (a reply is sent by its webhook): the
        message comes due again when the lease runs out, and counts toward her daily
        limit (`counted_at`) from now.
        """
        # No projection: FerretDB v1's findAndModify does not take one (the outbox comes too).
        claimed = await self._collection.find_one_and_update(
            {
                "_id": message_id,
                "status": from_status.value,
                "send_after": {"$lte": now},
                **_lease_free(now),
            },
            {
                "$set": {
                    "status": SmsStatus.SENDING.value,
                    "lease_until": now + LEASE,
                    "due_at": now + LEASE,
                    "claim_id": _claim_id(),
                    "counted_at": now,
                    "updated_at": now,
                },
                "$inc": {"attempts": 1, VERSION_FIELD: 1},
                "$push": {"status_history": _entry(SmsStatus.SENDING, now)},
            },
            return_document=ReturnDocument.AFTER,
        )
        if claimed is not None:
            claimed.pop(OUTBOX_FIELD, None)
        return claimed

    async def note_attempt(
        self,
        message_id: str,
        now: datetime,
        error: str,
        *,
        another: bool,
        claim: str | None,
        kind: MessageKind = MessageKind.NOTIFICATION,
    ) -> bool:
        """A failed attempt while `sending` (the message stays `sending`); `another` counts
        the attempt that follows at once and keeps the lease, else the lease is given up
        so the event's retry may claim the next attempt (and the schedule loop, a lease's
        time later, if none did). Only while the attempt `claim` still holds the message;
        False if not."""
        fields: Document = {"updated_at": now, "lease_until": now + LEASE if another else now}
        if kind is MessageKind.NOTIFICATION:
            # Given up, the lease is free for the event's retries at once; the schedule
            # loop takes the message over only if none of them did within a lease's time.
            fields["due_at"] = now + LEASE
        result = await self._collection.update_one(
            {"_id": message_id, "status": SmsStatus.SENDING.value, **_held_by(claim)},
            {
                "$inc": {"attempts": 1 if another else 0, VERSION_FIELD: 1},
                "$set": fields,
                "$push": {"status_history": _entry(SmsStatus.SENDING, now, error=error)},
            },
        )
        return result.matched_count == 1

    async def defer(
        self,
        message_id: str,
        until: datetime,
        reason: str,
        now: datetime,
        *,
        from_status: SmsStatus = SmsStatus.SCHEDULED,
        kind: MessageKind = MessageKind.NOTIFICATION,
        claim: str | None = None,
    ) -> bool:
        """Put the message (back) in the schedule for `until`, saying why (a reply, whose
        phone is not kept, waits for the gateway's retried webhook instead). From
        `sending`, only while no live lease holds it and the attempt `claim` (the one the
        caller made, or saw stopped) is still the latest; False if it did not move."""
        fields: Document = {
            "status": SmsStatus.SCHEDULED.value,
            "send_after": until,
            "updated_at": now,
        }
        update: Document = {
            "$set": fields,
            "$unset": {"lease_until": "", "counted_at": ""},
            "$inc": {VERSION_FIELD: 1},
            "$push": {
                "status_history": _entry(SmsStatus.SCHEDULED, now, reason=reason, until=until)
            },
        }
        if kind is MessageKind.NOTIFICATION:
            fields["due_at"] = until
        else:
            update["$unset"]["due_at"] = ""
        where: Document = {"_id": message_id, "status": from_status.value}
        if from_status is SmsStatus.SENDING:
            where.update(_held_by(claim), **_lease_free(now))
        result = await self._collection.update_one(where, update)
        return result.matched_count == 1

    async def finish(
        self,
        message_id: str,
        status: SmsStatus,
        now: datetime,
        *,
        from_statuses: Sequence[SmsStatus],
        reason: str | None = None,
        provider: str | None = None,
        provider_message_id: str | None = None,
        events: Sequence[CloudEvent] = (),
        claim: str | None = None,
        version: int | None = None,
    ) -> bool:
        """Move to a final status, with its outbox events, in one update; False if the
        message was no longer in one of `from_statuses` (or, given `claim`, no longer
        held by that attempt). Only `sent` keeps counting toward her daily limit.
        `version`: the message's as the caller read it (a `sent` record made at it needs
        no answer back, and a batch's go together; see the module)."""
        fields: dict[str, Any] = {"status": status.value, "updated_at": now}
        if provider is not None:
            fields["provider"] = provider
        if provider_message_id is not None:
            fields["provider_message_id"] = provider_message_id
        if status is SmsStatus.SENT:
            fields["sent_at"] = now
        if reason is not None:
            fields["reason"] = reason
        if status is SmsStatus.SUPPRESSED:
            fields["to"] = None  # never to be sent: keep no phone for it
        return await self._transition(
            {
                "_id": message_id,
                "status": {"$in": [s.value for s in from_statuses]},
                **_held_by(claim),
            },
            fields,
            _entry(status, now, reason=reason),
            events,
            now,
            uncount=status is not SmsStatus.SENT,
            version=version,
        )

    async def _transition(
        self,
        where: Document,
        fields: Document,
        history: Document,
        events: Sequence[CloudEvent],
        now: datetime,
        *,
        uncount: bool = False,
        version: int | None = None,
    ) -> bool:
        """`version`: the message's as the caller read it, if known."""
        unset = {"due_at": "", "lease_until": ""}
        if uncount:
            unset["counted_at"] = ""
        update: Document = {
            "$set": fields,
            "$unset": unset,
            "$inc": {VERSION_FIELD: 1},
            "$push": {"status_history": history},
        }
        if not events:
            result = await self._collection.update_one(where, update)
            return result.matched_count == 1
        entries = [outbox_entry(NOTIFICATIONS, e) for e in events]
        update["$push"][OUTBOX_FIELD] = {"$each": entries}
        update["$min"] = {OUTBOX_SINCE_FIELD: now}
        if version is not None:
            # Drawn for this call alone: a batch that matched fewer than it held reads it
            # back to learn whether this move was made (another process recording the
            # same send writes the same provider id, never this token).
            token = uuid.uuid4().hex
            moved = {**update, "$set": {**fields, FINAL_MOVE_FIELD: token}}
            if await self._moves.update_one(
                {**where, VERSION_FIELD: version}, moved, made_if={FINAL_MOVE_FIELD: token}
            ):
                # Its outbox was empty at that version (see the module): now just these.
                self._committed(
                    {"_id": where["_id"], VERSION_FIELD: version + 1, OUTBOX_FIELD: entries}
                )
                return True
        after = await self._collection.find_one_and_update(
            where,
            update,
            return_document=ReturnDocument.AFTER,
        )
        self._committed(after)  # the relay publishes the outbox it is handed
        return after is not None

    async def due(self, now: datetime, limit: int = 100) -> list[Document]:
        """Notifications whose time has come, earliest first: `scheduled` ones, and
        `sending` ones whose attempt's lease ran out. A range read on the `due_at` index
        (only a waiting or a claimed notification carries one)."""
        cursor = (
            self._collection.find({"due_at": {"$lte": now}}, {OUTBOX_FIELD: 0})
            .sort("due_at", ASCENDING)
            .limit(limit)
        )
        return [
            doc
            async for doc in cursor
            if doc.get("status") in (SmsStatus.SCHEDULED.value, SmsStatus.SENDING.value)
            and doc.get("kind") == MessageKind.NOTIFICATION.value
        ]

    async def in_sending(self, now: datetime) -> list[Document]:
        """Messages left `sending` whose lease ran out (their attempt's process stopped)."""
        cursor = self._collection.find(
            {"status": SmsStatus.SENDING.value, **_lease_free(now)}, {OUTBOX_FIELD: 0}
        )
        return [doc async for doc in cursor]

    async def sent_times(self, phone_hash: str, since: datetime) -> list[datetime]:
        """When notifications to this phone were handed to a provider, or claimed to be
        (`sending`: they may be on their way), since `since`: the messages themselves, by
        the phone-hash index. A record of the previous version has only `sent_at`. The
        sends of a batch's cases ask side by side: one query for their phones."""
        return await self._sent_times.call((phone_hash, since))

    async def _sent_times_query(self, asks: list[tuple[str, datetime]]) -> list[list[datetime]]:
        phones = list(dict.fromkeys(phone for phone, _ in asks))
        earliest = min(since for _, since in asks)
        cursor = self._collection.find(
            {
                "phone_hash": phones[0] if len(phones) == 1 else {"$in": phones},
                "kind": MessageKind.NOTIFICATION.value,
                "$or": [{"counted_at": {"$gt": earliest}}, {"sent_at": {"$gt": earliest}}],
            },
            {"phone_hash": 1, "counted_at": 1, "sent_at": 1},
        )
        times: dict[str, list[datetime]] = {}
        async for doc in cursor:
            at = max(t for t in (doc.get("counted_at"), doc.get("sent_at")) if t is not None)
            times.setdefault(doc["phone_hash"], []).append(at)
        # Each ask's own window: a message matched it if either time is after its `since`.
        return [[at for at in times.get(phone, ()) if at > since] for phone, since in asks]

    async def by_provider_id(self, provider: str, provider_message_id: str) -> Document | None:
        """The message a provider knows under `provider_message_id`, once its record says
        so (`sent` or later): one find on the provider-id index."""
        return await self._collection.find_one(
            {"provider_message_id": provider_message_id, "provider": provider},
            {OUTBOX_FIELD: 0},
        )

    async def record_report(
        self,
        message_id: str,
        status: SmsStatus,
        now: datetime,
        reason: str | None,
        events: Sequence[CloudEvent],
    ) -> bool:
        """A delivery report; a repeated report of the same status changes nothing."""
        return await self._transition(
            {"_id": message_id, "status": {"$ne": status.value}},
            {"status": status.value, "updated_at": now},
            _entry(status, now, reason=reason),
            events,
            now,
        )

    async def forget_case(self, case_id: str, reference: str | None, now: datetime) -> list[str]:
        """Erasure: no scheduled message goes, no sealed phone and no phone hash stays,
        and replies that named the case's reference (STATUS) are deleted. Returns the ids
        of those messages, for the provider to forget too."""
        await self._collection.update_many(
            {"case_id": case_id, "status": SmsStatus.SCHEDULED.value},
            {
                "$set": {"status": SmsStatus.SUPPRESSED.value, "updated_at": now},
                "$unset": {"due_at": ""},
                "$push": {"status_history": _entry(SmsStatus.SUPPRESSED, now, reason="erased")},
            },
        )
        await self._collection.update_many(
            {"case_id": case_id},
            {"$set": {"to": None, "phone_hash": None}, "$inc": {VERSION_FIELD: 1}},
        )
        ids = [d["_id"] async for d in self._collection.find({"case_id": case_id}, {"_id": 1})]
        if reference:
            ids += await self._delete_replies({"case_reference": reference})
        return ids

    async def forget_worker(self, phone_hash: str) -> list[str]:
        """Erasure of the phone's last case: every reply to it goes (a reply's id derives
        from her phone's hash). Returns the replies' ids."""
        return await self._delete_replies({"phone_hash": phone_hash})

    async def _delete_replies(self, where: Document) -> list[str]:
        query = {"kind": MessageKind.REPLY.value, **where}
        ids = [d["_id"] async for d in self._collection.find(query, {"_id": 1})]
        if ids:
            await self._collection.delete_many({"_id": {"$in": ids}})
        return ids

    async def for_case(self, case_id: str) -> list[Document]:
        """Every SMS record of a case (operators and tests)."""
        return [d async for d in self._collection.find({"case_id": case_id}, {OUTBOX_FIELD: 0})]
