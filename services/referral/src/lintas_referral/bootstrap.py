"""Referral's composition root: the one place that builds connections, at start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from typing import Any

from fastapi import FastAPI
from lintas_shared.consumer import FetchPolicy
from lintas_shared.crypto import KeyVault, MasterKeys
from lintas_shared.http import NATIVE_TELEMETRY_OFF, install_conventions
from lintas_shared.http_guard import HttpLimits
from lintas_shared.kafka import KafkaEventPublisher, make_broker
from lintas_shared.kafka_auth import service_auth
from lintas_shared.key_cache import KeyCache
from lintas_shared.logging import configure_logging
from lintas_shared.mongo import make_mongo_client
from lintas_shared.outbox import SLOW_CLEAR_DELAY, OutboxRelay
from lintas_shared.person_tokens import REFERRAL_AUDIENCE, PersonTokenVerifier
from lintas_shared.runtime import ServiceRuntime
from lintas_shared.unit_of_work import MongoVersionedDocuments

from lintas_referral import handlers, webhooks
from lintas_referral.adapters.audit import MongoAuditTrail
from lintas_referral.adapters.http_sender import HttpxSender, SystemResolver
from lintas_referral.adapters.partner_directory import MongoPartnerDirectory
from lintas_referral.adapters.routing_repository import MongoRoutingRepository
from lintas_referral.adapters.webhook_deliveries import MongoWebhookDeliveries
from lintas_referral.domain.case_routing import Policy
from lintas_referral.domain.handoff import load_default_manifests
from lintas_referral.domain.rules import RuleBook, load_default_rules, parse_rules
from lintas_referral.domain.webhooks import url_pattern
from lintas_referral.entrypoints.http import router
from lintas_referral.entrypoints.scheduler import Scheduler
from lintas_referral.entrypoints.subscribers import (
    register_subscribers,
    register_webhook_subscriber,
)
from lintas_referral.partner_load import LoadReconciler, ReconcilerLoop
from lintas_referral.settings import ReferralSettings

LEGAL_REFERRAL = "legal_referral"


def load_rules(settings: ReferralSettings) -> RuleBook:
    """The rule book; a broken file raises RulesFileError and the service does not start."""
    if settings.rules_file is None:
        return load_default_rules()
    return parse_rules(settings.rules_file.read_text("utf-8"), name=str(settings.rules_file))


def make_policy(settings: ReferralSettings) -> Policy:
    """Offer time-to-live, reminder days and the legal-referral manifest."""
    return Policy(
        offer_ttl=timedelta(hours=settings.offer_ttl_hours),
        closed_view_retention=timedelta(days=settings.closed_view_days),
        reminder_days=settings.reminder_days,
        manifest=load_default_manifests()[LEGAL_REFERRAL],
    )


def create_app(settings: ReferralSettings | None = None) -> FastAPI:
    """Build the referral app (uvicorn calls this with `--factory`)."""
    settings = settings or ReferralSettings()
    configure_logging("referral", settings.common.log_level)
    # Validate the rules before connecting anything: a broken file stops the service here.
    rules = load_rules(settings)
    policy = make_policy(settings)
    common = settings.common
    # A bad key stops the service here rather than refusing every lawyer later.
    person_tokens = (
        PersonTokenVerifier(common.console_public_key, REFERRAL_AUDIENCE)
        if common.console_public_key
        else None
    )
    mongo = make_mongo_client(common.mongodb_uri, app_name="lintas-referral")
    database = mongo[settings.database]
    kafka_auth = service_auth(common, "referral")
    broker = make_broker(common.kafka_bootstrap, client_id="lintas-referral", auth=kafka_auth)
    publisher = KafkaEventPublisher(broker)
    # One routing per case holds all its events: documents can go in parallel. Every
    # write goes through the routings' unit of work, which hands its outbox to the relay.
    documents = MongoVersionedDocuments(database["routings"])
    # A routing rarely changes soon after its offer: published entries wait a while, so
    # that several routings' go in one removal.
    relay = OutboxRelay(documents, publisher, clear_delay=SLOW_CLEAR_DELAY)
    routings = MongoRoutingRepository(documents, on_commit=relay.on_commit)
    # Who is behind a key, remembered a few seconds: not one read a request.
    partners = MongoPartnerDirectory(
        database["partners"], routings, callers_ttl=common.api_key_cache_seconds
    )
    vault = KeyVault(mongo[common.keyvault_database]["case_keys"], MasterKeys.from_settings(common))
    # A key read brings the keys stored with it: the next cases' are at hand.
    keys = KeyCache(vault, ttl=common.case_key_cache_seconds)
    ctx = handlers.Referrals(
        routings=routings, partners=partners, rules=rules, policy=policy, keys=keys
    )
    fetch = FetchPolicy.from_settings(common)
    register_subscribers(
        broker, group_id=settings.consumer_group, ctx=ctx, dead_letters=publisher, fetch=fetch
    )
    deliveries = MongoWebhookDeliveries(database["webhook_deliveries"])
    sender = HttpxSender()
    hooks = webhooks.Webhooks(
        deliveries=deliveries,
        partners=partners,
        routings=routings,
        sender=sender,
        box=webhooks.SecretBox(MasterKeys.from_settings(common)),
        resolver=SystemResolver(),
        allow_loopback=settings.webhook_allow_loopback,
    )
    register_webhook_subscriber(
        broker, group_id=settings.consumer_group, hooks=hooks, dead_letters=publisher, fetch=fetch
    )
    reconciler = ReconcilerLoop(
        LoadReconciler(
            partners,
            routings,
            handlers.utc_now,
            timedelta(seconds=settings.load_claim_grace_seconds),
        ),
        settings.load_reconcile_interval_seconds,
    )
    scheduler = Scheduler(
        [partial(handlers.run_due, ctx), partial(webhooks.deliver_due, hooks)],
        settings.scheduler_interval_seconds,
    )
    runtime = ServiceRuntime(
        name="referral",
        mongo=mongo,
        broker=broker,
        kafka_bootstrap=common.kafka_bootstrap,
        kafka_auth=kafka_auth,
        topic_partitions=common.topic_partitions,
        relays=[relay],
        gc_young_threshold=common.gc_young_threshold,
        shutdown_step_seconds=common.shutdown_step_seconds,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await routings.ensure_indexes()
        await partners.ensure_indexes()
        await deliveries.ensure_indexes()
        # The claims an earlier version kept in the partners' documents moved to their
        # own, then every partner's load recounted from the claims and the routings
        # (those stored before they counted it included), then every few minutes: never
        # per case.
        await partners.migrate_claims()
        await reconciler.run_once()
        async with runtime.lifespan(app):
            scheduler.start()
            reconciler.start()
            try:
                yield
            finally:
                await reconciler.stop()
                await scheduler.stop()
                await sender.close()

    app = FastAPI(
        title="Lintas referral API",
        version="0.1.0",
        description="Legal partners receive, accept and report on referrals. "
        "Authenticate with your organisation's key in the `X-API-Key` header, or, for a "
        "lawyer working in the Lintas console, with the short-lived token the console "
        "signs (`Authorization: Bearer`).",
        telemetry=NATIVE_TELEMETRY_OFF,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.routings = routings
    app.state.referrals = ctx
    app.state.partners = partners
    app.state.api_key_pepper = common.api_key_pepper.get_secret_value()
    app.state.person_tokens = person_tokens
    # The checkpoint lives beside the case keys, not with the records it seals.
    app.state.audit = MongoAuditTrail(
        database["audit"],
        mongo[common.keyvault_database]["audit_checkpoints"],
        common.audit_key.get_secret_value(),
    )
    app.state.webhooks = hooks
    app.state.deliveries = deliveries
    app.state.operator_token = settings.operator_token.get_secret_value()
    install_conventions(
        app,
        runtime.readiness(),
        asyncapi=runtime.asyncapi,
        limits=HttpLimits.from_settings(settings.common),
        person_tokens=person_tokens,
    )
    app.include_router(router)
    _document_webhook_urls(app, settings.webhook_allow_loopback)
    return app


def _document_webhook_urls(app: FastAPI, allow_loopback: bool) -> None:
    """State the webhook URL rule of this deployment (plain http to 127.0.0.1 only with
    the dev stack's loopback setting) in the OpenAPI document, as `check_url` applies it."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        document = build()
        schemas = document.get("components", {}).get("schemas", {})
        url = schemas.get("WebhookRequest", {}).get("properties", {}).get("url")
        if url is not None:
            url["pattern"] = url_pattern(allow_loopback)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
