"""Intake settings, from `LINTAS_INTAKE_*` (and the common `LINTAS_*`) variables."""

from __future__ import annotations

from lintas_shared.settings import CommonSettings, require_real_secret
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class IntakeSettings(BaseSettings):
    """Everything the intake service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="LINTAS_INTAKE_", extra="ignore")

    common: CommonSettings = Field(default_factory=CommonSettings)
    host: str = "127.0.0.1"
    port: int = 8080
    database: str = "lintas_intake"
    consumer_group: str = "lintas-intake"
    api_key_pepper: SecretStr = SecretStr("dev-only-intake-api-key-pepper")
    max_body_bytes: int = 256_000

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> IntakeSettings:
        require_real_secret(
            self.api_key_pepper, "LINTAS_INTAKE_API_KEY_PEPPER", self.common.environment
        )
        return self
