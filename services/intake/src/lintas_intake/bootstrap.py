"""Intake's composition root: the one place that builds connections, at start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from lintas_shared.consumer import FetchPolicy
from lintas_shared.crypto import KeyVault, MasterKeys
from lintas_shared.http import NATIVE_TELEMETRY_OFF, install_conventions
from lintas_shared.http_guard import HttpLimits
from lintas_shared.kafka import KafkaEventPublisher, make_broker
from lintas_shared.kafka_auth import service_auth
from lintas_shared.logging import configure_logging
from lintas_shared.mongo import make_mongo_client
from lintas_shared.outbox import OutboxRelay
from lintas_shared.person_tokens import INTAKE_AUDIENCE, PersonTokenVerifier
from lintas_shared.runtime import ServiceRuntime
from lintas_shared.unit_of_work import MongoVersionedDocuments

from lintas_intake.adapters.audit_trail import AuditTrail
from lintas_intake.adapters.case_keys import CachedCaseKeys
from lintas_intake.adapters.case_repository import MongoCaseRepository
from lintas_intake.adapters.organisation_directory import MongoOrganisationDirectory
from lintas_intake.entrypoints.admin import router as admin_router
from lintas_intake.entrypoints.batch import router as batch_router
from lintas_intake.entrypoints.http import router
from lintas_intake.entrypoints.subscribers import register_subscribers
from lintas_intake.handlers import CaseService
from lintas_intake.settings import IntakeSettings


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    """Build the intake app (uvicorn calls this with `--factory`)."""
    settings = settings or IntakeSettings()
    common = settings.common
    configure_logging("intake", common.log_level)
    mongo = make_mongo_client(common.mongodb_uri, app_name="lintas-intake")
    database = mongo[settings.database]
    kafka_auth = service_auth(common, "intake")
    broker = make_broker(common.kafka_bootstrap, client_id="lintas-intake", auth=kafka_auth)
    publisher = KafkaEventPublisher(broker)
    # One document per case holds all its events: documents can go in parallel. The
    # unit of work hands the relay each write's outbox (`on_commit`): no read back.
    # Every write of a case goes through it, so it may remember each case's last write
    # and skip the read of the next change (an event applied a moment later).
    documents = MongoVersionedDocuments(database["cases"], remember=settings.remember_cases)
    # A case's first news removes its published `case submitted` entry (see CaseService).
    relay = OutboxRelay(documents, publisher, writers_remove=True)
    vault = KeyVault(mongo[common.keyvault_database]["case_keys"], MasterKeys.from_settings(common))
    # New cases' keys are stored ahead, many to a write; recent keys stay in memory a
    # short while: most writes and reads of the vault go.
    keys = CachedCaseKeys(vault, ttl=common.case_key_cache_seconds)
    cases = MongoCaseRepository(documents, keys)
    service = CaseService(cases, keys, on_commit=relay.on_commit, published=relay)
    # Who is behind a key, remembered a few seconds: not one read a request.
    organisations = MongoOrganisationDirectory(
        database["organisations"],
        common.api_key_pepper.get_secret_value(),
        remember_seconds=common.api_key_cache_seconds,
    )
    # The checkpoint lives beside the case keys, not with the entries it seals.
    audit = AuditTrail(
        database["audit"],
        mongo[common.keyvault_database]["audit_checkpoints"],
        common.audit_key.get_secret_value(),
    )
    # A bad key stops the service here rather than refusing every person later.
    person_tokens = (
        PersonTokenVerifier(common.console_public_key, INTAKE_AUDIENCE)
        if common.console_public_key
        else None
    )
    register_subscribers(
        broker,
        group_id=settings.consumer_group,
        service=service,
        dead_letters=publisher,
        fetch=FetchPolicy.from_settings(common),
    )
    runtime = ServiceRuntime(
        name="intake",
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
        await vault.ensure_indexes()  # before a key with a batch is stored
        await cases.ensure_indexes()
        await organisations.ensure_indexes()
        await audit.ensure_indexes()
        async with runtime.lifespan(app):
            try:
                yield
            finally:
                await keys.discard_unused()

    app = FastAPI(
        title="Lintas intake API",
        version="0.1.0",
        description="Partner NGOs submit migrant workers' cases and follow their handoff. "
        "Authenticate with your organisation's key in the `X-API-Key` header, or, for a "
        "person working in the Lintas console, with the short-lived token the console "
        "signs (`Authorization: Bearer`). "
        "Errors are RFC 9457 problem details naming each bad field.",
        telemetry=NATIVE_TELEMETRY_OFF,
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.cases = cases
    app.state.indicators_min_cell = settings.indicators_min_cell
    app.state.organisations = organisations
    app.state.audit = audit
    app.state.person_tokens = person_tokens
    app.state.runtime = runtime
    install_conventions(
        app,
        runtime.readiness(),
        asyncapi=runtime.asyncapi,
        limits=HttpLimits.from_settings(settings.common),
        person_tokens=person_tokens,
    )
    app.include_router(router)
    app.include_router(batch_router)
    app.include_router(admin_router)
    return app
