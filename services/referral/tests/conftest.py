"""Fixtures for referral's integration tests: the stores on the real server, a clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from lintas_referral.adapters.http_sender import HttpxSender
from lintas_referral.adapters.partner_directory import MongoPartnerDirectory
from lintas_referral.adapters.routing_repository import MongoRoutingRepository
from lintas_referral.adapters.webhook_deliveries import MongoWebhookDeliveries
from lintas_referral.domain.case_routing import Policy
from lintas_referral.domain.handoff import load_default_manifests
from lintas_referral.domain.routing import Partner
from lintas_referral.domain.rules import load_default_rules
from lintas_referral.domain.webhooks import RetrySchedule
from lintas_referral.handlers import Referrals
from lintas_referral.webhooks import SecretBox, Webhooks
from lintas_shared.mongo import Document
from lintas_shared.unit_of_work import MongoVersionedDocuments
from pymongo import AsyncMongoClient

from tests.support.webhook_receiver import Receiver, webhook_receiver
from tests.support.webhook_resolver import FakeResolver

START = datetime(2026, 9, 16, 9, tzinfo=UTC)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@dataclass
class Stores:
    """Referral's stores on a fresh database, and a context builder (a 'process')."""

    routings: MongoRoutingRepository
    partners: MongoPartnerDirectory
    clock: FakeClock
    make: Callable[[], Referrals]

    @property
    def ctx(self) -> Referrals:
        return self.make()


@pytest.fixture
async def stores(mongo: AsyncMongoClient[Document], database_name: str) -> Stores:
    db = mongo[database_name]
    clock = FakeClock()
    policy = Policy(manifest=load_default_manifests()["legal_referral"])
    rules = load_default_rules()

    def make() -> Referrals:
        # A new set of adapters each time, as a restarted process would build them.
        routings = MongoRoutingRepository(MongoVersionedDocuments(db["routings"]))
        partners = MongoPartnerDirectory(db["partners"], routings)
        return Referrals(routings, partners, rules, policy, clock)

    routings = MongoRoutingRepository(MongoVersionedDocuments(db["routings"]))
    await routings.ensure_indexes()
    partners = MongoPartnerDirectory(db["partners"], routings)
    await partners.ensure_indexes()
    await partners.upsert(Partner("org-hk-1", "HK one", "HK"))
    await partners.upsert(Partner("org-hk-2", "HK two", "HK"))
    await partners.upsert(Partner("org-sg", "SG", "SG"))
    await partners.upsert(Partner("org-id-1", "ID one", "ID"))
    return Stores(routings, partners, clock, make)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1 that records what it is sent."""
    with webhook_receiver() as r:
        yield r


@pytest.fixture
async def hooks(stores: Stores, mongo: AsyncMongoClient[Document], database_name: str) -> Webhooks:
    """Referral's webhooks on the real store, sending to loopback receivers."""
    deliveries = MongoWebhookDeliveries(mongo[database_name]["webhook_deliveries"])
    await deliveries.ensure_indexes()
    return Webhooks(
        deliveries=deliveries,
        partners=stores.partners,
        routings=stores.routings,
        sender=HttpxSender(timeout=5),
        box=SecretBox("test-master"),
        resolver=FakeResolver(),
        clock=stores.clock,
        allow_loopback=True,  # the receiver is on 127.0.0.1, as on the dev stack
        # The longest wait of each step, so that tests can step the clock to it (the
        # jitter's spread has its own unit test).
        schedule=RetrySchedule(jitter=lambda: 1.0),
    )
