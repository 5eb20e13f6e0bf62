"""SMS records in MongoDB: one document per message, its status history and its outbox.

Every transition is a single-document conditional update (FerretDB v1 has no
transactions): the condition on the current status is what makes a claim exclusive.

FerretDB v1 answers every query but `_id` equality by reading the whole collection, so
the two questions asked for every message are kept in small side collections keyed by
`_id` (the message documents stay the truth; `repair` rebuilds them at start-up):
- `<name>_timers`: when each deferred message is due (see `DueTimers`);
- `<name>_worker_sends`: per phone hash, when her recent notifications went out (the
  daily limit), added by atomic `$push` so that concurrent processes lose none. Dropped
  with the phone's last case (`forget_worker`).

A receipt names the provider's message id, not ours. FerretDB v1 serves only `_id`
look-ups from an index (any other filter scans the collection), so the repository keeps
its own index: `messages_provider_ids`, `_id` = provider and provider message id, the
message id in it; written before the `sent` record that carries the provider's id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from lintas_shared.case_locks import CaseLocks
from lintas_shared.due_timers import DueTimers
from lintas_shared.envelope import CloudEvent
from lintas_shared.mongo import Document, update_by_id, upsert_by_id
from lintas_shared.outbox import OUTBOX_FIELD, outbox_entry
from lintas_shared.topics import NOTIFICATIONS
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from lintas_notify.domain.message import MessageKind, OutgoingSms, SmsStatus

#: How long a worker's send times are kept for the daily limit (longer than any window).
WORKER_SENDS_KEPT = timedelta(days=7)
#: A claim whose message is still not `sending` this long after it was made belongs to a
#: process that stopped between the claim and the status write (a SIGKILL in `make
#: faults` did, and the SMS was never sent): the provider was not called yet, so another
#: process takes the attempt over. Far above the two store round trips in between.
ORPHANED_CLAIM_AFTER = timedelta(minutes=2)


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
        OUTBOX_FIELD: [],
    }


def provider_key(provider: str, provider_message_id: str) -> str:
    """The `_id` under which a provider's message id is filed."""
    return f"{provider}:{provider_message_id}"


#: Marks, in the provider-id index, that records from before the index are in it.
_BACKFILLED = "#backfilled"


def sms_from_document(doc: Document, to: str) -> OutgoingSms:
    """The message as a provider needs it, with the phone decrypted only now."""
    return OutgoingSms(
        id=doc["_id"],
        case_id=doc.get("case_id"),
        case_reference=doc.get("case_reference"),
        to=to,
        to_sealed=doc.get("to"),
        phone_hash=doc.get("phone_hash") or "",  # None once the case is erased
        body=doc["body"],
        language=doc["language"],
        template=doc["template"],
        encoding=doc["encoding"],
        segments=doc["segments"],
        causing_event=doc["causing_event"],
        kind=MessageKind(doc.get("kind", MessageKind.NOTIFICATION.value)),
    )


class MongoMessageRepository:
    """SMS records on MongoDB (and FerretDB)."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        on_write: Callable[[str], None] = lambda _id: None,
        locks: CaseLocks | None = None,
    ) -> None:
        self._collection = collection
        self.locks = locks or CaseLocks()
        database, name = collection.database, collection.name
        self._claims = database[f"{name}_claims"]
        self._timers = DueTimers(database[f"{name}_timers"])
        self._worker_sends = database[f"{name}_worker_sends"]
        self._provider_ids = database[f"{name}_provider_ids"]
        self._on_write = on_write

    async def _update_one(self, message_id: str, query: Document, update: Document) -> bool:
        # Hold the message's lock, which the outbox relay also takes around its $pull:
        # writers in this process queue rather than fail each other's conditions.
        where = {field: value for field, value in query.items() if field != "_id"}
        async with self.locks.hold(message_id):
            return await update_by_id(self._collection, message_id, update, where=where)

    async def ensure_indexes(self) -> None:
        """Indexes for start-up repair, receipts, per-case reads and the timers."""
        await self._collection.create_index([("status", ASCENDING), ("send_after", ASCENDING)])
        await self._collection.create_index("provider_message_id")
        await self._collection.create_index("case_id")
        await self._timers.ensure_indexes()
        await self._backfill_provider_ids()

    async def repair(self, now: datetime) -> None:
        """At start-up: a timer for every scheduled notification and the workers' recent
        send times, from the messages themselves (after a crash between a message's
        write and theirs, or data from before them)."""
        scheduled = self._collection.find(
            {"status": SmsStatus.SCHEDULED.value, "kind": MessageKind.NOTIFICATION.value},
            {"send_after": 1},
        )
        await self._timers.ensure_all({d["_id"]: d["send_after"] async for d in scheduled})
        sent: dict[str, list[datetime]] = {}
        cursor = self._collection.find(
            {
                "kind": MessageKind.NOTIFICATION.value,
                "sent_at": {"$gt": now - WORKER_SENDS_KEPT},
            },
            {"phone_hash": 1, "sent_at": 1},
        )
        async for doc in cursor:
            if doc.get("phone_hash"):  # an erased case's messages have none
                sent.setdefault(doc["phone_hash"], []).append(doc["sent_at"])
        for phone_hash, times in sent.items():
            async with self.locks.hold(f"worker:{phone_hash}"):
                await self._worker_sends.update_one(
                    {"_id": phone_hash}, {"$set": {"sent_at": sorted(times)}}, upsert=True
                )

    async def _backfill_provider_ids(self) -> None:
        """Once per database: file the provider ids of records sent before the index
        existed (one scan, at start-up, never again)."""
        if await self._provider_ids.find_one({"_id": _BACKFILLED}) is not None:
            return
        cursor = self._collection.find(
            {"provider_message_id": {"$ne": None}},
            {"provider": 1, "provider_message_id": 1, "sent_at": 1},
        )
        async for doc in cursor:
            if doc.get("provider") and doc.get("provider_message_id"):
                await self._file_provider_id(
                    doc["provider"], doc["provider_message_id"], doc["_id"], doc.get("sent_at")
                )
        with contextlib.suppress(DuplicateKeyError):
            await self._provider_ids.insert_one({"_id": _BACKFILLED})

    async def _file_provider_id(
        self, provider: str, provider_message_id: str, message_id: str, now: datetime | None
    ) -> None:
        key = provider_key(provider, provider_message_id)
        doc = {"_id": key, "message_id": message_id, "at": now}
        # Two writers may file the same id at once (the consumer's retry and the
        # schedule loop both recording `sent`).
        await upsert_by_id(self._provider_ids, key, doc)

    async def schedule(
        self,
        sms: OutgoingSms,
        now: datetime,
        status: SmsStatus,
        *,
        current_country: str | None = None,
        time_zone: str | None = None,
    ) -> tuple[Document, bool]:
        """Record the decision to send (`scheduled`, or `sending` for an immediate reply);
        returns the document and whether this call created it.

        The unique _id (cause + template) makes this a one-time decision: a redelivered
        event finds the existing document and gets it back instead.
        """
        doc = _document(sms, status, now, now)
        doc["current_country"], doc["time_zone"] = current_country, time_zone
        if status is SmsStatus.SENDING:
            doc["attempts"] = 1
        try:
            await self._collection.insert_one(doc)
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
            await self._collection.insert_one(doc)
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

        Exclusive through a unique insert, not a conditional update: FerretDB v1 reads
        and then writes a findAndModify or a filtered update, so two processes (or the
        consumer and the schedule loop) could both see `scheduled` and both send. The
        claim's _id is the message id and the attempt number it starts: whoever inserts
        it first owns that attempt; a racer, even one holding an older read, gets a
        duplicate key and backs off. A claim whose maker stopped before writing
        `sending` is taken over once it is `ORPHANED_CLAIM_AFTER` old (see there).
        """
        doc = await self.get(message_id)
        if doc is None or doc["status"] != from_status.value or doc["send_after"] > now:
            return None
        attempts = doc.get("attempts")
        attempt = int(attempts or 0) + 1
        claim_id = f"{message_id}#{attempt}"
        try:
            await self._claims.insert_one({"_id": claim_id, "at": now})
        except DuplicateKeyError:
            if not await self._take_over_orphaned_claim(claim_id, now):
                return None
        history = _entry(SmsStatus.SENDING, now)
        # Only from the state read above: a claimer that stalled for longer than
        # ORPHANED_CLAIM_AFTER, its attempt taken over meanwhile, finds it moved on.
        unchanged = {
            "status": from_status.value,
            "attempts": {"$exists": False} if attempts is None else attempts,
        }
        started = await self._update_one(
            message_id,
            {"_id": message_id, **unchanged},
            {
                "$set": {
                    "status": SmsStatus.SENDING.value,
                    "attempts": attempt,
                    "updated_at": now,
                },
                "$push": {"status_history": history},
            },
        )
        if not started:
            return None
        doc.update(status=SmsStatus.SENDING.value, attempts=attempt, updated_at=now)
        doc["status_history"] = [*doc["status_history"], history]
        return doc

    async def _take_over_orphaned_claim(self, claim_id: str, now: datetime) -> bool:
        """Take over a claim its maker left behind; True if this caller now holds it."""
        claim = await self._claims.find_one({"_id": claim_id})
        if claim is None or claim["at"] > now - ORPHANED_CLAIM_AFTER:
            return False  # its maker is (as far as anyone can tell) still at work
        # Compare-and-set on the claim's time: of several processes taking over, one wins.
        return await update_by_id(
            self._claims,
            claim_id,
            {"$set": {"at": now, "taken_over_from": claim["at"]}},
            where={"at": claim["at"]},
        )

    async def note_attempt(
        self, message_id: str, now: datetime, error: str, *, another: bool
    ) -> None:
        """A failed attempt while `sending` (the message stays claimed); `another` counts
        the attempt that follows at once (`attempts` counts hand-overs to the provider)."""
        await self._update_one(
            message_id,
            {"_id": message_id, "status": SmsStatus.SENDING.value},
            {
                "$inc": {"attempts": 1 if another else 0},
                "$set": {"updated_at": now},
                "$push": {"status_history": _entry(SmsStatus.SENDING, now, error=error)},
            },
        )

    async def defer(
        self,
        message_id: str,
        until: datetime,
        reason: str,
        now: datetime,
        *,
        from_status: SmsStatus = SmsStatus.SCHEDULED,
    ) -> None:
        """Put the message (back) in the schedule for `until`, saying why."""
        await self._timers.set(message_id, until)
        await self._update_one(
            message_id,
            {"_id": message_id, "status": from_status.value},
            {
                "$set": {
                    "status": SmsStatus.SCHEDULED.value,
                    "send_after": until,
                    "updated_at": now,
                },
                "$push": {
                    "status_history": _entry(SmsStatus.SCHEDULED, now, reason=reason, until=until)
                },
            },
        )

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
    ) -> bool:
        """Move to a final status, with its outbox events, in one update; False if the
        message was no longer in one of `from_statuses`."""
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
        if provider is not None and provider_message_id is not None:
            # Filed first: a receipt finds the message only once both are written.
            await self._file_provider_id(provider, provider_message_id, message_id, now)
        finished = await self._update_one(
            message_id,
            {"_id": message_id, "status": {"$in": [s.value for s in from_statuses]}},
            {
                "$set": fields,
                "$push": {
                    "status_history": _entry(status, now, reason=reason),
                    OUTBOX_FIELD: {"$each": [outbox_entry(NOTIFICATIONS, e) for e in events]},
                },
            },
        )
        if events:
            self._on_write(message_id)
        if finished:
            await self._timers.clear(message_id)  # final: nothing more is due
        return finished

    async def due(self, now: datetime, limit: int = 100) -> list[str]:
        """Ids of scheduled notifications whose time has come, earliest first.

        Read through the timers; a timer that no longer matches its message (sent,
        suppressed, moved) is put right here. One of a message being sent stays until
        the send is recorded.
        """
        found = []
        for message_id in await self._timers.due(now, limit):
            doc = await self._collection.find_one(
                {"_id": message_id}, {"status": 1, "send_after": 1, "kind": 1}
            )
            if doc is None or doc.get("kind") != MessageKind.NOTIFICATION.value:
                await self._timers.clear(message_id)
            elif doc["status"] != SmsStatus.SCHEDULED.value:
                if doc["status"] != SmsStatus.SENDING.value:
                    await self._timers.clear(message_id)
            elif doc["send_after"] > now:
                await self._timers.set(message_id, doc["send_after"])
            else:
                found.append(message_id)
        return found

    async def in_sending(self) -> list[Document]:
        """Messages an earlier run left between claim and record (resolved at start-up)."""
        cursor = self._collection.find({"status": SmsStatus.SENDING.value}, {OUTBOX_FIELD: 0})
        return [doc async for doc in cursor]

    async def sent_times(self, phone_hash: str, since: datetime) -> list[datetime]:
        """When notifications to this phone were handed to a provider, since `since`."""
        doc = await self._worker_sends.find_one({"_id": phone_hash})
        return [] if doc is None else [t for t in doc["sent_at"] if t > since]

    async def note_sent(self, phone_hash: str, at: datetime) -> None:
        """Count a notification handed to a provider for this phone (the daily limit).

        The send is added with one atomic `$push`, so two processes never lose each
        other's. Entries past the kept window are then cut by compare-and-swap: the list
        is replaced only if it is still the one read, so a send added in between stays.
        """
        await self._worker_sends.update_one(
            {"_id": phone_hash}, {"$push": {"sent_at": at}}, upsert=True
        )
        doc = await self._worker_sends.find_one({"_id": phone_hash})
        times = [] if doc is None else list(doc["sent_at"])
        kept = [t for t in times if t > at - WORKER_SENDS_KEPT]
        if len(kept) < len(times):
            await update_by_id(
                self._worker_sends,
                phone_hash,
                {"$set": {"sent_at": kept}},
                where={"sent_at": times},
            )

    async def by_provider_id(self, provider: str, provider_message_id: str) -> Document | None:
        """The message a provider knows under `provider_message_id`, once its record says
        so (`sent` or later); two `_id` look-ups, never a scan."""
        filed = await self._provider_ids.find_one(
            {"_id": provider_key(provider, provider_message_id)}
        )
        if filed is None:
            return None
        doc = await self.get(filed["message_id"])
        if (
            doc is None
            or doc.get("provider") != provider
            or doc.get("provider_message_id") != provider_message_id
        ):
            return None
        return doc

    async def record_report(
        self,
        message_id: str,
        status: SmsStatus,
        now: datetime,
        reason: str | None,
        events: Sequence[CloudEvent],
    ) -> bool:
        """A delivery report; a repeated report of the same status changes nothing."""
        recorded = await self._update_one(
            message_id,
            {"_id": message_id, "status": {"$ne": status.value}},
            {
                "$set": {"status": status.value, "updated_at": now},
                "$push": {
                    "status_history": _entry(status, now, reason=reason),
                    OUTBOX_FIELD: {"$each": [outbox_entry(NOTIFICATIONS, e) for e in events]},
                },
            },
        )
        if recorded and events:
            self._on_write(message_id)
        return recorded

    async def forget_case(self, case_id: str, reference: str | None, now: datetime) -> list[str]:
        """Erasure: no scheduled message goes, no sealed phone and no phone hash stays,
        and replies that named the case's reference (STATUS) are deleted. Returns the ids
        of those messages, for the provider to forget too."""
        await self._collection.update_many(
            {"case_id": case_id, "status": SmsStatus.SCHEDULED.value},
            {
                "$set": {"status": SmsStatus.SUPPRESSED.value, "updated_at": now},
                "$push": {"status_history": _entry(SmsStatus.SUPPRESSED, now, reason="erased")},
            },
        )
        await self._collection.update_many(
            {"case_id": case_id}, {"$set": {"to": None, "phone_hash": None}}
        )
        ids = [d["_id"] async for d in self._collection.find({"case_id": case_id}, {"_id": 1})]
        if reference:
            ids += await self._delete_replies({"case_reference": reference})
        return ids

    async def forget_worker(self, phone_hash: str) -> list[str]:
        """Erasure of the phone's last case: its daily-limit record and every reply to it
        go (a reply's id derives from her phone's hash). Returns the replies' ids."""
        await self._worker_sends.delete_one({"_id": phone_hash})
        return await self._delete_replies({"phone_hash": phone_hash})

    async def _delete_replies(self, where: Document) -> list[str]:
        # A scan on FerretDB v1 (no index serves it): erasures are rare.
        query = {"kind": MessageKind.REPLY.value, **where}
        ids = [d["_id"] async for d in self._collection.find(query, {"_id": 1})]
        if ids:
            await self._collection.delete_many({"_id": {"$in": ids}})
        return ids

    async def for_case(self, case_id: str) -> list[Document]:
        """Every SMS record of a case (operators and tests)."""
        return [d async for d in self._collection.find({"case_id": case_id}, {OUTBOX_FIELD: 0})]
