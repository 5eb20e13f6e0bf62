"""Referral's composition root: the one place that builds connections, at start-up."""

from __future__ import annotations

from fastapi import FastAPI
from lintas_shared.http import install_conventions
from lintas_shared.kafka import KafkaEventPublisher, make_broker
from lintas_shared.logging import configure_logging
from lintas_shared.mongo import make_mongo_client
from lintas_shared.outbox import OutboxRelay
from lintas_shared.runtime import ServiceRuntime

from lintas_referral.adapters.partner_directory import MongoPartnerDirectory
from lintas_referral.adapters.routing_repository import MongoRoutingRepository
from lintas_referral.entrypoints.subscribers import register_subscribers
from lintas_referral.settings import ReferralSettings


def create_app(settings: ReferralSettings | None = None) -> FastAPI:
    """Build the referral app (uvicorn calls this with `--factory`)."""
    settings = settings or ReferralSettings()
    configure_logging("referral", settings.common.log_level)
    mongo = make_mongo_client(settings.common.mongodb_uri, app_name="lintas-referral")
    database = mongo[settings.database]
    broker = make_broker(settings.common.kafka_bootstrap, client_id="lintas-referral")
    publisher = KafkaEventPublisher(broker)
    relay = OutboxRelay(database["routings"], publisher)
    routings = MongoRoutingRepository(database["routings"], on_write=relay.wake)
    partners = MongoPartnerDirectory(database["partners"], routings)
    register_subscribers(
        broker,
        group_id=settings.consumer_group,
        routings=routings,
        partners=partners,
        dead_letters=publisher,
    )
    runtime = ServiceRuntime(
        name="referral",
        mongo=mongo,
        broker=broker,
        kafka_bootstrap=settings.common.kafka_bootstrap,
        topic_partitions=settings.common.topic_partitions,
        relays=[relay],
    )
    app = FastAPI(
        title="Lintas referral API",
        version="0.1.0",
        description="Routes each claim to a legal partner in the right jurisdiction.",
        lifespan=runtime.lifespan,
    )
    app.state.runtime = runtime
    app.state.routings = routings
    install_conventions(
        app,
        {"store": runtime.store_ready, "kafka": runtime.broker_ready},
        asyncapi=runtime.asyncapi,
    )
    return app
