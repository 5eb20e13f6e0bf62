"""Settings every service reads, from `LINTAS_*` environment variables.

Each service adds its own settings class (prefix `LINTAS_<SERVICE>_`) that holds a
`CommonSettings` for what they share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_PREFIX = "dev-only-"  # noqa: S105  (a marker, not a secret)


class CommonSettings(BaseSettings):
    """Connection and convention settings shared by all services."""

    model_config = SettingsConfigDict(env_prefix="LINTAS_", extra="ignore")

    environment: Literal["dev", "production"] = "dev"
    kafka_bootstrap: str = "127.0.0.1:9092"
    mongodb_uri: str = "mongodb://127.0.0.1:27017/"
    topic_partitions: int = 6
    log_level: str = "INFO"
    state_dir: Path = Path(".lintas")
    #: Hashes API keys (HMAC): every service verifies keys the same way.
    api_key_pepper: SecretStr = SecretStr(DEV_SECRET_PREFIX + "api-key-pepper")
    #: Wraps the per-case data keys in the key vault.
    master_key: SecretStr = SecretStr(DEV_SECRET_PREFIX + "master-key")
    #: Keys the phone lookup hash (inbound SMS, opt-outs).
    phone_hash_key: SecretStr = SecretStr(DEV_SECRET_PREFIX + "phone-hash-key")
    keyvault_database: str = "lintas_keyvault"
    #: Requests a minute one API key may make to one instance; 0 turns the limit off.
    http_rate_limit_per_minute: int = 6_000
    #: Requests one key may make at once before the per-minute rate applies.
    http_rate_limit_burst: int = 600
    #: Largest request body accepted (413 beyond), declared or streamed.
    http_max_body_bytes: int = 256_000
    #: Seconds a client has to send a request's head (the connection is closed after).
    http_header_timeout_seconds: float = 10.0
    #: Seconds a client has to send the whole request body (408 after).
    http_body_timeout_seconds: float = 30.0
    #: Deepest nesting of arrays and objects accepted in a JSON body (400 beyond).
    http_max_json_depth: int = 32
    #: The console's Ed25519 public key (PEM): intake and referral accept the person
    #: tokens it signs (`Authorization: Bearer`). Unset: only API keys are accepted.
    console_public_key: str | None = None

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> CommonSettings:
        for name in ("api_key_pepper", "master_key", "phone_hash_key"):
            require_real_secret(getattr(self, name), f"LINTAS_{name.upper()}", self.environment)
        return self


def require_real_secret(secret: SecretStr, name: str, environment: str) -> SecretStr:
    """Refuse the shipped development placeholder for `name` outside the dev stack."""
    if environment != "dev" and secret.get_secret_value().startswith(DEV_SECRET_PREFIX):
        raise ValueError(f"{name} still has its development placeholder; set a real secret")
    return secret
