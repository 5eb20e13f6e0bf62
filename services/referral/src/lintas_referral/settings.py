"""Referral settings, from `LINTAS_REFERRAL_*` (and the common `LINTAS_*`) variables."""

from __future__ import annotations

from pathlib import Path

from lintas_shared.settings import DEV_SECRET_PREFIX, CommonSettings, require_real_secret
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ReferralSettings(BaseSettings):
    """Everything the referral service reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="LINTAS_REFERRAL_", extra="ignore", hide_input_in_errors=True
    )

    common: CommonSettings = Field(default_factory=CommonSettings)
    host: str = "127.0.0.1"
    port: int = 8081
    database: str = "lintas_referral"
    consumer_group: str = "lintas-referral"
    #: How long a partner has to accept an offer before it goes to the next one.
    offer_ttl_hours: float = Field(default=72.0, gt=0)
    #: Days a partner keeps the case's personal data (view and content key) after it
    #: closed the referral; then only the outcome is shown. A withdrawn one loses it at once.
    closed_view_days: float = Field(default=30.0, ge=0)
    #: Days before a filing deadline on which a reminder is sent.
    reminder_days: tuple[int, ...] = (30, 7, 1)
    #: How often the scheduler looks for expired offers, due reminders and deliveries.
    scheduler_interval_seconds: float = Field(default=5.0, gt=0)
    #: How often each partner's load is recounted from the routings (and at start-up):
    #: what a crashed instance left counted or uncounted is put right by then.
    load_reconcile_interval_seconds: float = Field(default=300.0, gt=0)
    #: A claim on a partner's load no routing holds is dropped only once it is this old
    #: (a younger one may belong to a routing write still on its way).
    load_claim_grace_seconds: float = Field(default=300.0, gt=0)
    #: A rules file to use instead of the one shipped with the service.
    rules_file: Path | None = None
    #: Operators present this in `X-Operator-Token` (e.g. to redeliver a webhook).
    operator_token: SecretStr = SecretStr(DEV_SECRET_PREFIX + "referral-operator-token")
    #: Webhooks to plain http://127.0.0.1 and to loopback addresses: for the dev stack's
    #: own receivers only (`lintas up` and the tests set it). Never on by default, and
    #: refused outside `LINTAS_ENVIRONMENT=dev`.
    webhook_allow_loopback: bool = False

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> ReferralSettings:
        require_real_secret(
            self.operator_token, "LINTAS_REFERRAL_OPERATOR_TOKEN", self.common.environment
        )
        if self.webhook_allow_loopback and self.common.environment != "dev":
            raise ValueError(
                "LINTAS_REFERRAL_WEBHOOK_ALLOW_LOOPBACK is for the dev stack only "
                f"(LINTAS_ENVIRONMENT is {self.common.environment})"
            )
        return self
