"""Notify's composition root: the one place that builds connections, at start-up."""

from __future__ import annotations

from fastapi import FastAPI
from lintas_shared.crypto import KeyVault
from lintas_shared.http import install_conventions
from lintas_shared.kafka import KafkaEventPublisher, make_broker
from lintas_shared.logging import configure_logging, get_logger
from lintas_shared.mongo import make_mongo_client
from lintas_shared.outbox import OutboxRelay
from lintas_shared.runtime import ServiceRuntime

from lintas_notify.adapters.file_provider import FileSmsProvider
from lintas_notify.adapters.message_repository import MongoMessageRepository
from lintas_notify.domain.templates import load_catalogue
from lintas_notify.entrypoints.subscribers import register_subscribers
from lintas_notify.settings import NotifySettings


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    """Build the notify app (uvicorn calls this with `--factory`)."""
    settings = settings or NotifySettings()
    configure_logging("notify", settings.common.log_level)
    catalogue, warnings = load_catalogue(settings.default_language)
    for warning in warnings:
        get_logger(__name__).warning("sms template leaves GSM-7", detail=warning)
    mongo = make_mongo_client(settings.common.mongodb_uri, app_name="lintas-notify")
    database = mongo[settings.database]
    broker = make_broker(settings.common.kafka_bootstrap, client_id="lintas-notify")
    publisher = KafkaEventPublisher(broker)
    relay = OutboxRelay(database["messages"], publisher)
    messages = MongoMessageRepository(database["messages"], on_write=relay.wake)
    provider = FileSmsProvider(settings.sms_outbox_path)
    keys = KeyVault(
        mongo[settings.common.keyvault_database]["case_keys"],
        settings.common.master_key.get_secret_value(),
    )
    register_subscribers(
        broker,
        group_id=settings.consumer_group,
        messages=messages,
        provider=provider,
        catalogue=catalogue,
        keys=keys,
        dead_letters=publisher,
    )
    runtime = ServiceRuntime(
        name="notify",
        mongo=mongo,
        broker=broker,
        kafka_bootstrap=settings.common.kafka_bootstrap,
        topic_partitions=settings.common.topic_partitions,
        relays=[relay],
    )
    app = FastAPI(
        title="Lintas notify API",
        version="0.1.0",
        description="SMS to workers in their language, carrying only a case reference.",
        lifespan=runtime.lifespan,
    )
    app.state.runtime = runtime
    app.state.messages = messages
    install_conventions(
        app,
        {"store": runtime.store_ready, "kafka": runtime.broker_ready},
        asyncapi=runtime.asyncapi,
    )
    return app
