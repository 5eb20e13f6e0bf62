"""Notify's composition root: the one place that builds connections, at start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from lintas_shared.consumer import EventConsumer, FetchPolicy
from lintas_shared.crypto import KeyVault, MasterKeys
from lintas_shared.http import NATIVE_TELEMETRY_OFF, install_conventions
from lintas_shared.http_guard import HttpLimits
from lintas_shared.kafka import KafkaEventPublisher, make_broker
from lintas_shared.kafka_auth import service_auth
from lintas_shared.key_cache import KeyCache
from lintas_shared.logging import configure_logging, get_logger
from lintas_shared.mongo import make_mongo_client
from lintas_shared.outbox import SLOW_CLEAR_DELAY, OutboxRelay
from lintas_shared.runtime import ServiceRuntime

from lintas_notify.adapters.case_profiles import MongoCaseProfiles
from lintas_notify.adapters.early_events import MongoEarlyEvents
from lintas_notify.adapters.early_receipts import MongoEarlyReceipts
from lintas_notify.adapters.file_provider import FileSmsProvider
from lintas_notify.adapters.http_provider import HttpSmsProvider
from lintas_notify.adapters.instrumented import InstrumentedProvider, MeteredMessageRepository
from lintas_notify.adapters.message_repository import MongoMessageRepository
from lintas_notify.adapters.preferences import MongoPreferences
from lintas_notify.adapters.reply_budget import MongoReplyBudget
from lintas_notify.adapters.smpp_provider import SmppSmsProvider
from lintas_notify.dispatch import Clock, Dispatcher, SendRules
from lintas_notify.domain.schedule import ProviderRateLimit, QuietHours, WorkerLimit
from lintas_notify.domain.templates import load_catalogue
from lintas_notify.entrypoints.http import router
from lintas_notify.entrypoints.subscribers import register_subscribers
from lintas_notify.handlers import NotifyHandlers
from lintas_notify.phones import PhoneLookup
from lintas_notify.ports import SmsProvider
from lintas_notify.receipts import DeliveryReports
from lintas_notify.replies import Conversations
from lintas_notify.settings import NotifySettings


def utc_now() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


def make_provider(settings: NotifySettings) -> SmsProvider:
    """The SMS provider chosen by settings."""
    if settings.sms_provider == "http":
        return HttpSmsProvider(
            settings.http_base_url,
            account=settings.http_account,
            auth_token=settings.http_auth_token.get_secret_value(),
            sender=settings.http_sender,
            status_callback=settings.http_status_callback,
        )
    if settings.sms_provider == "smpp":
        return SmppSmsProvider(
            settings.smpp_host,
            settings.smpp_port,
            system_id=settings.smpp_system_id,
            password=settings.smpp_password.get_secret_value(),
            source_addr=settings.smpp_source_addr,
            bind_type=settings.smpp_bind_type,
            enquire_link_interval=settings.smpp_enquire_link_interval,
            response_timeout=settings.smpp_response_timeout,
        )
    return FileSmsProvider(settings.sms_outbox_path)


@dataclass
class NotifyService:
    """Everything the running service is made of (tests reach into it)."""

    runtime: ServiceRuntime
    broker: KafkaBroker
    messages: MongoMessageRepository
    profiles: MongoCaseProfiles
    dispatcher: Dispatcher
    handlers: NotifyHandlers
    conversations: Conversations
    consumers: tuple[EventConsumer, EventConsumer]
    provider: SmsProvider
    preferences: MongoPreferences
    reply_budget: MongoReplyBudget
    #: The previous version's early-event collections, moved into the profiles at start.
    former_early_events: MongoEarlyEvents

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """Indexes, then settle messages left `sending`, then consume and run the schedule."""
        await self.messages.ensure_indexes()
        await self.profiles.ensure_indexes()
        await self.preferences.ensure_indexes()
        await self.former_early_events.migrate(self.profiles, self.handlers.replay)
        await self.reply_budget.ensure_indexes()
        await self.dispatcher.resolve_in_sending()
        async with self.runtime.lifespan(app):
            if isinstance(self.provider, SmppSmsProvider):
                self.provider.start()  # bind now: the SMSC may hold receipts for us
            self.dispatcher.start()
            try:
                yield
            finally:
                await self.dispatcher.stop()
                if isinstance(self.provider, SmppSmsProvider):
                    await self.provider.close()  # unbind politely


def build(
    settings: NotifySettings, *, clock: Clock = utc_now, provider: SmsProvider | None = None
) -> NotifyService:
    """Wire the service from its settings (the clock and provider can be replaced)."""
    catalogue, warnings = load_catalogue(settings.default_language)
    for warning in warnings:
        get_logger(__name__).warning("sms template leaves GSM-7", detail=warning)
    mongo = make_mongo_client(settings.common.mongodb_uri, app_name="lintas-notify")
    database = mongo[settings.database]
    kafka_auth = service_auth(settings.common, "notify")
    broker = make_broker(
        settings.common.kafka_bootstrap, client_id="lintas-notify", auth=kafka_auth
    )
    publisher = KafkaEventPublisher(broker)
    # Counted as they are stored (lintas_sms_* metrics); otherwise the plain repository.
    messages = MeteredMessageRepository(database["messages"])
    # Nothing changes a message or a preference soon after: published entries wait a
    # while, so that several documents' go in one removal.
    message_relay = OutboxRelay(messages.documents, publisher, clear_delay=SLOW_CLEAR_DELAY)
    messages.on_commit(message_relay.on_commit)
    preferences = MongoPreferences(database["preferences"])
    preference_relay = OutboxRelay(preferences.documents, publisher, clear_delay=SLOW_CLEAR_DELAY)
    preferences.on_commit(preference_relay.on_commit)
    profiles = MongoCaseProfiles(database["cases"])
    vault = KeyVault(
        mongo[settings.common.keyvault_database]["case_keys"],
        MasterKeys.from_settings(settings.common),
    )
    # A key read brings the keys stored with it: the next cases' are at hand.
    keys = KeyCache(vault, ttl=settings.common.case_key_cache_seconds)
    provider = provider or make_provider(settings)
    reports = DeliveryReports(messages, MongoEarlyReceipts(database["early_receipts"]), clock)
    dispatcher = Dispatcher(
        messages,
        preferences,
        InstrumentedProvider(provider),  # a span and a count per hand-over
        keys,
        rules=SendRules(
            QuietHours(settings.quiet_start, settings.quiet_end),
            WorkerLimit(settings.worker_daily_limit),
            ProviderRateLimit(settings.provider_rate_per_second),
        ),
        clock=clock,
        poll_interval=settings.dispatch_interval,
        receipts=reports,
    )
    early = MongoEarlyEvents(database["early_events"])
    phones = PhoneLookup(keys, settings.common.phone_hash_key.get_secret_value())
    reply_budget = MongoReplyBudget(
        database["reply_budget"],
        limit=settings.reply_limit,
        window=timedelta(minutes=settings.reply_window_minutes),
    )
    handlers = NotifyHandlers(
        messages, profiles, preferences, dispatcher, catalogue, clock, phones, reply_budget
    )
    conversations = Conversations(
        messages,
        profiles,
        preferences,
        dispatcher,
        catalogue,
        settings.common.phone_hash_key.get_secret_value(),
        clock,
        reports,
        reply_budget,
    )
    if isinstance(provider, SmppSmsProvider):
        provider.on_receipt = conversations.receipt  # receipts come back on the session
    consumers = register_subscribers(
        broker,
        group_id=settings.consumer_group,
        handlers=handlers,
        dead_letters=publisher,
        fetch=FetchPolicy.from_settings(settings.common),
        cases_first_backlog=settings.cases_first_backlog,
    )
    runtime = ServiceRuntime(
        name="notify",
        mongo=mongo,
        broker=broker,
        kafka_bootstrap=settings.common.kafka_bootstrap,
        kafka_auth=kafka_auth,
        topic_partitions=settings.common.topic_partitions,
        relays=[message_relay, preference_relay],
        gc_young_threshold=settings.common.gc_young_threshold,
        shutdown_step_seconds=settings.common.shutdown_step_seconds,
    )
    return NotifyService(
        runtime,
        broker,
        messages,
        profiles,
        dispatcher,
        handlers,
        conversations,
        consumers,
        provider,
        preferences,
        reply_budget,
        early,
    )


def create_app(
    settings: NotifySettings | None = None, service: NotifyService | None = None
) -> FastAPI:
    """Build the notify app (uvicorn calls this with `--factory`)."""
    settings = settings or NotifySettings()
    configure_logging("notify", settings.common.log_level)
    service = service or build(settings)
    app = FastAPI(
        title="Lintas notify API",
        version="0.1.0",
        description="SMS to workers in their language, carrying only a case reference.",
        telemetry=NATIVE_TELEMETRY_OFF,
        lifespan=service.lifespan,
    )
    app.state.service = service
    app.state.runtime = service.runtime
    app.state.messages = service.messages
    app.state.conversations = service.conversations
    app.state.inbound_token = settings.inbound_token.get_secret_value()
    app.include_router(router)
    install_conventions(
        app,
        service.runtime.readiness(),
        asyncapi=service.runtime.asyncapi,
        limits=HttpLimits.from_settings(settings.common),
    )
    return app
