"""Notify settings, from `LINTAS_NOTIFY_*` (and the common `LINTAS_*`) variables."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Literal

from lintas_shared.settings import DEV_SECRET_PREFIX, CommonSettings, require_real_secret
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class NotifySettings(BaseSettings):
    """Everything the notify service reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="LINTAS_NOTIFY_", extra="ignore", hide_input_in_errors=True
    )

    common: CommonSettings = Field(default_factory=CommonSettings)
    host: str = "127.0.0.1"
    port: int = 8082
    database: str = "lintas_notify"
    consumer_group: str = "lintas-notify"
    sms_provider: Literal["file", "http", "smpp"] = "file"
    sms_outbox_path: Path = Path(".lintas/sms-outbox.jsonl")
    default_language: str = "en"
    #: Shared with the SMS provider for inbound SMS and receipts (X-Lintas-Provider-Token).
    inbound_token: SecretStr = SecretStr(DEV_SECRET_PREFIX + "sms-inbound-token")
    #: Quiet hours in the worker's local time (equal start and end turn them off).
    quiet_start: time = time(21, 0)
    quiet_end: time = time(7, 0)
    #: At most this many notifications to one worker in any 24 hours; more wait.
    worker_daily_limit: int = Field(default=3, ge=1)
    #: At most this many answers (SMS we pay for) to one phone's own SMS in each reply
    #: window; beyond, her SMS still act (STOP stops) but get no answer.
    reply_limit: int = Field(default=5, ge=1)
    reply_window_minutes: int = Field(default=60, ge=1)
    #: At most this many messages a second through the provider; more wait.
    provider_rate_per_second: float = Field(default=10.0, gt=0)
    #: While the cases consumer has more than this many records left to handle, the
    #: referrals consumer waits for it (at most a minute a batch), so that a case's
    #: referral events rarely overtake its `submitted` (a bulk import's backlog); 0: never.
    cases_first_backlog: int = Field(default=200, ge=0)
    #: How often the schedule of deferred messages is checked, in seconds.
    dispatch_interval: float = Field(default=1.0, gt=0)
    #: The http provider: a Twilio-shaped Messages API.
    http_base_url: str = "http://127.0.0.1:8099"
    http_account: str = "lintas"
    http_auth_token: SecretStr = SecretStr(DEV_SECRET_PREFIX + "http-gateway-token")
    http_sender: str = "Lintas"
    #: Where the gateway posts status callbacks (our /v1/delivery-receipts).
    http_status_callback: str | None = None

    #: The smpp provider: an SMS centre speaking SMPP v3.4.
    smpp_host: str = "127.0.0.1"
    smpp_port: int = 2775
    smpp_system_id: str = "lintas"
    smpp_password: SecretStr = SecretStr(DEV_SECRET_PREFIX + "smpp")
    smpp_source_addr: str = "Lintas"
    smpp_bind_type: Literal["TRX", "TX"] = "TRX"
    #: Seconds between enquire_link requests while bound (the keep-alive).
    smpp_enquire_link_interval: float = Field(default=30.0, gt=0)
    #: Seconds to wait for any SMPP response (bind, submit_sm, enquire_link); without
    #: one the connection is treated as dropped and bound again.
    smpp_response_timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> NotifySettings:
        env = self.common.environment
        require_real_secret(self.inbound_token, "LINTAS_NOTIFY_INBOUND_TOKEN", env)
        # The provider issues these (an SMPP password is at most 8 characters): only the
        # placeholder is refused, not a short one.
        if self.sms_provider == "http":
            require_real_secret(self.http_auth_token, "LINTAS_NOTIFY_HTTP_AUTH_TOKEN", env, 0)
        if self.sms_provider == "smpp":
            require_real_secret(self.smpp_password, "LINTAS_NOTIFY_SMPP_PASSWORD", env, 0)
        return self
