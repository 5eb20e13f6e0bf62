"""Referral settings, from `LINTAS_REFERRAL_*` (and the common `LINTAS_*`) variables."""

from __future__ import annotations

from lintas_shared.settings import CommonSettings
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ReferralSettings(BaseSettings):
    """Everything the referral service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="LINTAS_REFERRAL_", extra="ignore")

    common: CommonSettings = Field(default_factory=CommonSettings)
    host: str = "127.0.0.1"
    port: int = 8081
    database: str = "lintas_referral"
    consumer_group: str = "lintas-referral"
