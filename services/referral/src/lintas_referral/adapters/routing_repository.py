"""Case routings in MongoDB: one document per case with its referrals and outbox."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from lintas_shared.envelope import CloudEvent
from lintas_shared.events import CaseSubmitted
from lintas_shared.mongo import Document
from lintas_shared.outbox import OUTBOX_FIELD, outbox_entry
from lintas_shared.topics import REFERRALS
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from lintas_referral.domain.routing import Blocked, Offer

OPEN_REFERRAL_STATUSES = ("offered", "accepted", "in_progress")


class MongoRoutingRepository:
    """The `RoutingRepository` on MongoDB (and FerretDB)."""

    def __init__(
        self,
        collection: AsyncCollection[Document],
        on_write: Callable[[str], None] = lambda _id: None,
    ) -> None:
        self._collection = collection
        self._on_write = on_write

    async def create(
        self,
        case: CaseSubmitted,
        decision: Offer | Blocked,
        referral_id: str | None,
        now: datetime,
        events: Sequence[CloudEvent],
    ) -> bool:
        """Insert the routing keyed by case id; a duplicate means it was already routed."""
        referrals = []
        if isinstance(decision, Offer):
            referrals.append(
                {
                    "id": referral_id,
                    "partner_organisation_id": decision.partner.id,
                    "country": decision.country,
                    "status": "offered",
                    "offered_at": now,
                }
            )
        doc: Document = {
            "_id": case.case_id,
            "organisation_id": case.organisation_id,
            # Routing needs the claim facts, not the worker's contact details.
            "case": case.model_dump(mode="json", exclude={"worker": {"phone"}}),
            "status": "offered" if isinstance(decision, Offer) else decision.status,
            "reason": None if isinstance(decision, Offer) else decision.reason,
            "referrals": referrals,
            "open_partner_ids": [r["partner_organisation_id"] for r in referrals],
            "created_at": now,
            "updated_at": now,
            "version": 1,
            OUTBOX_FIELD: [outbox_entry(REFERRALS, e) for e in events],
        }
        try:
            await self._collection.insert_one(doc)
        except DuplicateKeyError:
            return False
        self._on_write(case.case_id)
        return True

    async def get(self, case_id: str) -> Document | None:
        """The raw routing document of a case (for operators and tests)."""
        return await self._collection.find_one({"_id": case_id}, {OUTBOX_FIELD: 0})

    async def open_referrals(self, partner_id: str) -> int:
        """How many open referrals a partner holds."""
        return await self._collection.count_documents({"open_partner_ids": partner_id})
