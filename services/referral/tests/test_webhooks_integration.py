"""Signed webhook delivery to a real local receiver, with retries on a stored schedule.

The receiver verifies with the `standardwebhooks` package and reads the body with the
CloudEvents SDK, as a partner would (tests/support/webhook_receiver.py)."""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import itertools
import time
from datetime import timedelta

import pytest
from lintas_referral import handlers, webhooks
from lintas_referral.adapters.http_sender import HttpxSender
from lintas_referral.adapters.partner_directory import MongoPartnerDirectory
from lintas_referral.adapters.webhook_deliveries import MongoWebhookDeliveries
from lintas_referral.domain.routing import Partner
from lintas_referral.domain.webhooks import SignatureScheme
from lintas_referral.handlers import Referrals
from lintas_referral.webhooks import Webhooks
from lintas_shared.crypto import DataKey
from lintas_shared.envelope import CloudEvent
from lintas_shared.events import PARTNER_NOTE_FIELD, ReferralDeclined, make_event
from lintas_shared.mongo import Document
from lintas_shared.outbox import OUTBOX_FIELD, entry_event
from pymongo import AsyncMongoClient
from standardwebhooks.webhooks import Webhook

from services.referral.tests.conftest import Stores
from tests.support.referral_cases import case, submitted
from tests.support.webhook_receiver import Receiver
from tests.support.webhook_resolver import FakeResolver, RecordingSender

pytestmark = pytest.mark.integration


async def offered_event(stores: Stores, case_id: str, ctx: Referrals | None = None) -> CloudEvent:
    await handlers.on_case_submitted(submitted(case(case_id)), ctx or stores.ctx)
    doc = await stores.routings.raw(case_id)
    assert doc is not None
    return entry_event(doc[OUTBOX_FIELD][0])


async def test_a_failed_delivery_is_retried_with_backoff_until_it_lands(
    stores: Stores, hooks: Webhooks, receiver: Receiver
) -> None:
    receiver.secret = await webhooks.register(hooks, "org-hk-1", receiver.url)
    event = await offered_event(stores, "case-w1")
    await webhooks.on_referral_event(event, hooks)
    await webhooks.on_referral_event(event, hooks)  # redelivered: still one delivery
    receiver.fail_next = 2

    assert await webhooks.deliver_due(hooks) == 1  # fails (500)
    stores.clock.advance(seconds=29)
    assert await webhooks.deliver_due(hooks) == 0  # not due yet: 30 s backoff
    stores.clock.advance(seconds=1)
    assert await webhooks.deliver_due(hooks) == 1  # fails again
    stores.clock.advance(seconds=59)
    assert await webhooks.deliver_due(hooks) == 0  # 60 s backoff
    stores.clock.advance(seconds=1)
    assert await webhooks.deliver_due(hooks) == 1  # lands
    stores.clock.advance(hours=1)
    assert await webhooks.deliver_due(hooks) == 0

    assert receiver.failed_on_purpose == 2
    [body] = receiver.accepted
    assert (body["id"], body["type"], body["data"]["referral_id"]) == (
        event.id,
        "org.lintas.referral.offered",
        event.data["referral_id"],
    )
    [delivery] = await hooks.deliveries.for_referral(event.data["referral_id"])  # type: ignore[attr-defined]
    assert delivery["state"] == "delivered"
    assert [(a["status_code"], a["ok"]) for a in delivery["log"]] == [
        (500, False),
        (500, False),
        (204, True),
    ]


async def test_no_webhook_registered_means_no_delivery(stores: Stores, hooks: Webhooks) -> None:
    event = await offered_event(stores, "case-w0")
    await webhooks.on_referral_event(event, hooks)
    assert await webhooks.deliver_due(hooks) == 0


async def test_a_webhook_registered_elsewhere_gets_the_next_event(
    stores: Stores,
    hooks: Webhooks,
    receiver: Receiver,
    mongo: AsyncMongoClient[Document],
    database_name: str,
) -> None:
    # Another instance of referral, whose directory has answered "no webhook" already.
    elsewhere = MongoPartnerDirectory(mongo[database_name]["partners"], ttl=5, clock=lambda: 0.0)
    other = dataclasses.replace(hooks, partners=elsewhere)
    assert not await elsewhere.has_webhook("org-hk-1")

    receiver.secret = await webhooks.register(hooks, "org-hk-1", receiver.url)
    event = await offered_event(stores, "case-w-elsewhere")
    await webhooks.on_referral_event(event, other)  # within its ttl: a "no" is not kept

    assert await webhooks.deliver_due(hooks) == 1
    assert [body["id"] for body in receiver.accepted] == [event.id]


@dataclasses.dataclass
class OneProcess:
    """The routing and the webhook queueing of one process (as the service runs them),
    its directory on a clock the test moves (`at`)."""

    at: list[float]
    ctx: Referrals
    hooks: Webhooks


@pytest.fixture
async def here(
    stores: Stores, hooks: Webhooks, mongo: AsyncMongoClient[Document], database_name: str
) -> OneProcess:
    """One process; one Hong Kong partner (org-hk-1) takes these cases."""
    await stores.partners.upsert(Partner("org-hk-2", "HK two", "HK", frozenset({"other"})))
    at = [0.0]
    directory = MongoPartnerDirectory(mongo[database_name]["partners"], ttl=5, clock=lambda: at[0])
    return OneProcess(
        at,
        dataclasses.replace(stores.ctx, partners=directory),
        dataclasses.replace(hooks, partners=directory),
    )


async def test_a_referral_event_is_queued_on_its_claims_answer_for_a_few_seconds(
    stores: Stores, hooks: Webhooks, receiver: Receiver, here: OneProcess
) -> None:
    # Both counted while the partner had no webhook; it then registers through another
    # instance (`hooks`' directory).
    first = await offered_event(stores, "case-w-first", here.ctx)
    second = await offered_event(stores, "case-w-second", here.ctx)
    receiver.secret = await webhooks.register(hooks, "org-hk-1", receiver.url)

    here.at[0] = 1.0  # the claim's answer, a second old, stands: not queued
    await webhooks.on_referral_event(first, here.hooks)
    assert await webhooks.deliver_due(hooks) == 0
    here.at[0] = 6.0  # older than the ttl: read again, and queued
    await webhooks.on_referral_event(second, here.hooks)
    assert await webhooks.deliver_due(hooks) == 1
    assert [body["id"] for body in receiver.accepted] == [second.id]


async def test_a_registration_through_this_instance_counts_at_once(
    stores: Stores, hooks: Webhooks, receiver: Receiver, here: OneProcess
) -> None:
    offered = await offered_event(stores, "case-w-here", here.ctx)  # counted: no webhook yet
    receiver.secret = await webhooks.register(here.hooks, "org-hk-1", receiver.url)
    await webhooks.on_referral_event(offered, here.hooks)
    assert await webhooks.deliver_due(hooks) == 1
    assert [body["id"] for body in receiver.accepted] == [offered.id]


async def test_stale_or_badly_signed_deliveries_are_rejected_by_the_receiver(
    stores: Stores, hooks: Webhooks, receiver: Receiver
) -> None:
    receiver.secret = await webhooks.register(hooks, "org-hk-1", receiver.url)
    assert receiver.secret.startswith("whsec_")
    event = await offered_event(stores, "case-w2")
    await webhooks.on_referral_event(event, hooks)
    stale = dataclasses.replace(hooks, wall_clock=lambda: time.time() - 301)
    await webhooks.deliver_due(stale)
    right = receiver.secret
    receiver.secret = "whsec_" + base64.b64encode(b"not-the-one-we-gave").decode()
    stores.clock.advance(seconds=30)
    await webhooks.deliver_due(hooks)
    assert receiver.rejected == ["stale timestamp", "bad signature"]
    assert receiver.accepted == []
    [delivery] = await hooks.deliveries.for_referral(event.data["referral_id"])  # type: ignore[attr-defined]
    assert [a["status_code"] for a in delivery["log"]] == [401, 401]
    assert delivery["state"] == "pending"

    # The right secret: the third attempt lands, with the same webhook-id as the first.
    receiver.secret = right
    stores.clock.advance(seconds=60)
    await webhooks.deliver_due(hooks)
    assert len(receiver.accepted) == 1
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert ids == {delivery["_id"]}


async def test_standard_webhooks_headers_and_a_cloudevent_body(
    stores: Stores, hooks: Webhooks, receiver: Receiver
) -> None:
    receiver.secret = await webhooks.register(hooks, "org-hk-1", receiver.url)
    event = await offered_event(stores, "case-w4")
    await webhooks.on_referral_event(event, hooks)
    await webhooks.deliver_due(hooks)
    [seen] = receiver.requests
    assert seen.headers["content-type"] == "application/cloudevents+json"
    assert seen.headers["webhook-signature"].startswith("v1,")
    assert int(seen.headers["webhook-timestamp"]) == pytest.approx(time.time(), abs=10)
    assert "x-lintas-signature" not in seen.headers  # new registrations: the standard only
    [body] = receiver.accepted
    assert (body["id"], body["source"], body["type"], body["subject"]) == (
        event.id,
        event.source,
        "org.lintas.referral.offered",
        event.subject,
    )
    assert body["data"]["referral_id"] == event.data["referral_id"]


async def test_a_decline_is_delivered_without_the_partners_sealed_words(
    stores: Stores, hooks: Webhooks, receiver: Receiver
) -> None:
    # Sealed with the case's key, which partners never get: left out, not sent unreadable
    # and not opened either (the delivery log would keep the words in clear).
    receiver.secret = await webhooks.register(hooks, "org-hk-1", receiver.url)
    offered = await offered_event(stores, "case-w9")
    note = DataKey("case-w9", bytes(32)).encrypt(PARTNER_NOTE_FIELD, "Wulandari's agency")
    declined = ReferralDeclined(
        referral_id=offered.data["referral_id"],
        case_id="case-w9",
        partner_organisation_id="org-hk-1",
        country="HK",
        at=stores.clock(),
        note=note,
    )
    event = make_event(declined, source="/lintas/referral", subject="case-w9")
    await webhooks.on_referral_event(event, hooks)
    await webhooks.deliver_due(hooks)
    [body] = receiver.accepted
    assert (body["type"], body["data"]["referral_id"]) == (declined.TYPE, declined.referral_id)
    assert "note" not in body["data"]
    [delivery] = await hooks.deliveries.for_referral(declined.referral_id)  # type: ignore[attr-defined]
    assert note not in str(delivery)


@pytest.mark.parametrize("scheme", ["both", "lintas-v1"])
async def test_a_partner_on_the_old_header_keeps_it_for_a_release(
    stores: Stores, hooks: Webhooks, receiver: Receiver, scheme: SignatureScheme
) -> None:
    receiver.scheme = "lintas-v1"  # a receiver built before the standard headers
    receiver.secret = await webhooks.register(hooks, "org-hk-1", receiver.url, scheme)
    event = await offered_event(stores, f"case-w5-{scheme}")
    await webhooks.on_referral_event(event, hooks)
    await webhooks.deliver_due(hooks)
    assert receiver.rejected == []
    [seen] = receiver.requests
    assert seen.headers["x-lintas-event-id"] == event.id
    assert ("webhook-signature" in seen.headers) is (scheme == "both")
    if scheme == "both":  # and the same delivery verifies the standard way too
        Webhook(receiver.secret).verify(seen.body, seen.headers)


async def test_a_registration_from_before_schemes_is_signed_the_old_way(
    stores: Stores, hooks: Webhooks, receiver: Receiver
) -> None:
    receiver.scheme = "lintas-v1"
    receiver.secret = "whsec_" + "an-old-url-safe-secret_-"
    sealed = hooks.box.seal("org-hk-1", receiver.secret)
    partners: MongoPartnerDirectory = hooks.partners  # type: ignore[assignment]
    await partners._collection.update_one(
        {"_id": "org-hk-1"}, {"$set": {"webhook": {"url": receiver.url, "secret": sealed}}}
    )
    event = await offered_event(stores, "case-w6")
    await webhooks.on_referral_event(event, hooks)
    await webhooks.deliver_due(hooks)
    assert receiver.rejected == []
    assert len(receiver.accepted) == 1
    assert "webhook-signature" not in receiver.requests[0].headers


async def test_gives_up_after_24_hours_and_an_operator_redelivers(
    stores: Stores, hooks: Webhooks, receiver: Receiver
) -> None:
    receiver.secret = await webhooks.register(hooks, "org-hk-1", receiver.url)
    event = await offered_event(stores, "case-w3")
    await webhooks.on_referral_event(event, hooks)
    start = stores.clock()
    receiver.fail_next = 1_000
    store: MongoWebhookDeliveries = hooks.deliveries  # type: ignore[assignment]
    while True:
        await webhooks.deliver_due(hooks)
        [delivery] = await store.for_referral(event.data["referral_id"])
        if delivery["state"] != "pending":
            break
        stores.clock.now = delivery["next_attempt_at"]
    assert delivery["state"] == "failed"
    attempts = [a["at"] for a in delivery["log"]]
    assert attempts[-1] <= start + timedelta(hours=24)
    assert attempts[-1] >= start + timedelta(hours=20)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[:4] == [timedelta(seconds=s) for s in (30, 60, 120, 240)]

    receiver.fail_next = 0
    assert await store.reschedule(delivery["_id"], stores.clock())
    assert await webhooks.deliver_due(hooks) == 1
    [delivery] = await store.for_referral(event.data["referral_id"])
    assert delivery["state"] == "delivered"
    assert len(receiver.accepted) == 1


async def test_a_name_whose_answer_turns_private_is_not_sent_to_at_delivery(
    stores: Stores, hooks: Webhooks
) -> None:
    resolver = FakeResolver({"partner.example.org": ["93.184.216.34"]})
    sender = RecordingSender()
    strict = dataclasses.replace(hooks, resolver=resolver, sender=sender, allow_loopback=False)
    await webhooks.register(strict, "org-hk-1", "https://partner.example.org/hook")
    event = await offered_event(stores, "case-w-dns")
    await webhooks.on_referral_event(event, strict)

    resolver.answers["partner.example.org"] = ["93.184.216.34", "10.0.0.7"]  # DNS changed
    assert await webhooks.deliver_due(strict) == 1
    assert sender.sent == []  # nothing left for the private address, nor the public one
    resolver.answers["partner.example.org"] = ["93.184.216.34"]
    stores.clock.advance(seconds=30)
    assert await webhooks.deliver_due(strict) == 1
    # Sent to the address that was checked, for the URL as registered.
    assert [(url, str(address)) for url, address in sender.sent] == [
        ("https://partner.example.org/hook", "93.184.216.34")
    ]
    [delivery] = await hooks.deliveries.for_referral(event.data["referral_id"])  # type: ignore[attr-defined]
    assert [(a["status_class"], a["ok"]) for a in delivery["log"]] == [
        ("address refused", False),
        ("2xx", True),
    ]
    assert all("error" not in a for a in delivery["log"])


async def test_the_sender_connects_to_the_checked_address_without_a_second_lookup(
    receiver: Receiver,
) -> None:
    receiver.secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    sender = HttpxSender(timeout=5)
    port = receiver.url.split(":")[2].split("/")[0]
    # `.invalid` never resolves: the request can only have gone to the address given.
    url = f"http://partner.invalid:{port}/lintas"
    try:
        status = await sender.post(url, ipaddress.ip_address("127.0.0.1"), b"{}", {})
    finally:
        await sender.close()
    assert status == 401  # unsigned, so the receiver refuses it: but it got there
    [seen] = receiver.requests
    assert seen.headers["host"] == f"partner.invalid:{port}"
