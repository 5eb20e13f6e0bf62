"""Settings every service reads, from `LINTAS_*` environment variables.

Each service adds its own settings class (prefix `LINTAS_<SERVICE>_`) that holds a
`CommonSettings` for what they share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_PREFIX = "dev-only-"  # noqa: S105  (a marker, not a secret)
#: The fewest bytes a secret of ours may have outside the dev stack (a 256-bit key).
MIN_SECRET_BYTES = 32
#: Values published in this repository's docs and examples: never a real secret.
PUBLISHED_PLACEHOLDERS: frozenset[str] = frozenset(
    {"change-me", "changeme", "replace-me", "secret", "password"}
)
#: Master key id entries without one were wrapped by (see `MasterKeys`).
LEGACY_MASTER_KEY_ID = "1"
#: Seconds an instance remembers who is behind an API key, unless set otherwise.
DEFAULT_API_KEY_CACHE_SECONDS = 5.0
#: Seconds a service keeps a case key it read, unless set otherwise.
DEFAULT_CASE_KEY_CACHE_SECONDS = 30.0
#: Allocations between two collections of Python's youngest generation (Python's own:
#: 700). Measured at 60 cases/s, back to back: the services' CPU a case 13.3 ms with
#: Python's collector as it is, 12.2-12.3 with this (and `gc.freeze`), 12.6 with 50,000.
DEFAULT_GC_YOUNG_THRESHOLD = 10_000
#: How long a stopping consumer waits for its in-flight handlers (seconds).
HANDLER_GRACE_SECONDS = 15.0
#: The longest each step of a service's shutdown may take (seconds): more than the
#: handlers' grace, so the first step always gets past it to stop the consumers.
DEFAULT_SHUTDOWN_STEP_SECONDS = 20.0


class CommonSettings(BaseSettings):
    """Connection and convention settings shared by all services."""

    # A refused secret's value must never reach an error message or a log.
    model_config = SettingsConfigDict(
        env_prefix="LINTAS_", extra="ignore", hide_input_in_errors=True
    )

    #: Not dev unless said: the placeholders below are refused everywhere else.
    environment: Literal["dev", "production"] = "production"
    kafka_bootstrap: str = "127.0.0.1:9092"
    #: The service's own Kafka principal (SASL); unset: the service's name (`intake`, ...).
    kafka_username: str | None = None
    #: That principal's password (the dev broker gives every principal the placeholder).
    kafka_password: SecretStr = SecretStr(DEV_SECRET_PREFIX + "kafka-password")
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_security_protocol: Literal["SASL_PLAINTEXT", "SASL_SSL"] = "SASL_PLAINTEXT"
    #: How long the broker may hold a consumer's fetch to gather a batch (ms); 0: answer
    #: at the first record. See `lintas_shared.consumer.FetchPolicy`.
    kafka_fetch_max_wait_ms: int = Field(default=100, ge=0, le=10_000)
    #: The bytes waiting that make the broker answer a fetch before that wait is up.
    kafka_fetch_min_bytes: int = Field(default=65_536, ge=1, le=16_777_216)
    mongodb_uri: str = "mongodb://127.0.0.1:27017/"
    topic_partitions: int = 6
    log_level: str = "INFO"
    #: After start-up, what start-up made is set aside from Python's garbage collector
    #: (`gc.freeze`) and the youngest generation is collected every this many
    #: allocations. 0 leaves the collector as Python sets it (see `ServiceRuntime.start`).
    gc_young_threshold: int = Field(default=DEFAULT_GC_YOUNG_THRESHOLD, ge=0, le=1_000_000)
    #: The longest each step of a shutdown may take (stop consuming, flush the outbox,
    #: disconnect): what is still running then is logged and cancelled. More than
    #: `HANDLER_GRACE_SECONDS`, which the first step may spend on in-flight handlers.
    shutdown_step_seconds: float = Field(
        default=DEFAULT_SHUTDOWN_STEP_SECONDS, gt=HANDLER_GRACE_SECONDS, le=600
    )
    state_dir: Path = Path(".lintas")
    #: Hashes API keys (HMAC): every service verifies keys the same way.
    api_key_pepper: SecretStr = SecretStr(DEV_SECRET_PREFIX + "api-key-pepper")
    #: Wraps the per-case data keys in the key vault (and seals webhook secrets).
    master_key: SecretStr = SecretStr(DEV_SECRET_PREFIX + "master-key")
    #: The id stored with everything `master_key` wraps or seals; change it with the key.
    master_key_id: str = Field(default=LEGACY_MASTER_KEY_ID, pattern=r"^[A-Za-z0-9_-]{1,32}$")
    #: Master keys being rotated away from, `id=secret` pairs separated by commas: still
    #: read, never used to wrap. Empty once `lintas keys rotate` has re-wrapped everything.
    master_keys_previous: SecretStr | None = None
    #: Keys the phone lookup hash (inbound SMS, opt-outs).
    phone_hash_key: SecretStr = SecretStr(DEV_SECRET_PREFIX + "phone-hash-key")
    #: Keys the audit chains' MACs and their checkpoints; never stored in a database.
    audit_key: SecretStr = SecretStr(DEV_SECRET_PREFIX + "audit-key")
    keyvault_database: str = "lintas_keyvault"
    #: Requests a minute one API key may make to one instance; 0 turns the limit off.
    http_rate_limit_per_minute: int = 6_000
    #: Requests one key may make at once before the per-minute rate applies.
    http_rate_limit_burst: int = 600
    #: Requests a minute one client address may make to one instance without credentials
    #: the instance has accepted (none, made up, wrong); 0 counts them per key instead.
    http_unauthenticated_rate_limit_per_minute: int = 1_200
    #: Such requests one address may make at once before its per-minute rate applies.
    http_unauthenticated_rate_limit_burst: int = 300
    #: Largest request body accepted (413 beyond), declared or streamed.
    http_max_body_bytes: int = 256_000
    #: Seconds a client has to send a request's head (the connection is closed after).
    http_header_timeout_seconds: float = 10.0
    #: Seconds a client has to send the whole request body (408 after).
    http_body_timeout_seconds: float = 30.0
    #: Deepest nesting of arrays and objects accepted in a JSON body (400 beyond).
    http_max_json_depth: int = 32
    #: Seconds an instance remembers who is behind an API key (or a person token's
    #: organisation): a revoked key is refused by every instance that long after at most
    #: (`lintas org revoke-key` waits it out). 0 reads the store at every request.
    api_key_cache_seconds: float = Field(default=DEFAULT_API_KEY_CACHE_SECONDS, ge=0, le=300)
    #: Seconds a service keeps a case key it read from the vault, with the keys stored
    #: in the same write (`lintas_shared.key_cache`): after an erasure, an event handled
    #: late may still open the case's data that long. 0 reads the vault every time.
    case_key_cache_seconds: float = Field(default=DEFAULT_CASE_KEY_CACHE_SECONDS, ge=0, le=300)
    #: The console's Ed25519 public key (PEM): intake and referral accept the person
    #: tokens it signs (`Authorization: Bearer`). Unset: only API keys are accepted.
    console_public_key: str | None = None

    @model_validator(mode="after")
    def _no_placeholder_secrets(self) -> CommonSettings:
        for name in (
            "api_key_pepper",
            "master_key",
            "phone_hash_key",
            "audit_key",
            "kafka_password",
        ):
            require_real_secret(getattr(self, name), f"LINTAS_{name.upper()}", self.environment)
        previous = self.previous_master_keys()  # raises on a malformed list
        if self.master_key_id in previous:
            raise ValueError(
                "LINTAS_MASTER_KEYS_PREVIOUS repeats LINTAS_MASTER_KEY_ID: give the new "
                "master key a new id"
            )
        for key_id, secret in previous.items():
            require_real_secret(
                SecretStr(secret), f"LINTAS_MASTER_KEYS_PREVIOUS (id {key_id})", self.environment
            )
        return self

    def previous_master_keys(self) -> dict[str, str]:
        """`LINTAS_MASTER_KEYS_PREVIOUS` as {id: secret}; raises ValueError (naming the
        variable, never a value) when an entry is not `id=secret`."""
        keys: dict[str, str] = {}
        listed = self.master_keys_previous
        for entry in (listed.get_secret_value() if listed else "").split(","):
            if not entry.strip():
                continue
            key_id, sep, secret = entry.strip().partition("=")
            if not sep or not key_id.strip() or not secret:
                raise ValueError(
                    "LINTAS_MASTER_KEYS_PREVIOUS must be id=secret pairs, comma-separated"
                )
            keys[key_id.strip()] = secret
        return keys

    def master_keys(self) -> dict[str, str]:
        """Every master key that may be read, {id: secret}, the current one included."""
        return self.previous_master_keys() | {
            self.master_key_id: self.master_key.get_secret_value()
        }


def secret_problem(value: str, min_bytes: int = MIN_SECRET_BYTES) -> str | None:
    """What is wrong with a secret for a deployment (None if nothing): a published
    placeholder, or shorter than `min_bytes`. Never includes the value."""
    if value.startswith(DEV_SECRET_PREFIX) or value.strip().lower() in PUBLISHED_PLACEHOLDERS:
        return "is a published placeholder"
    if len(value.encode()) < min_bytes:
        return f"is too short (under {min_bytes} bytes)"
    return None


def require_real_secret(
    secret: SecretStr, name: str, environment: str, min_bytes: int = MIN_SECRET_BYTES
) -> SecretStr:
    """Refuse, outside the dev stack (`LINTAS_ENVIRONMENT=dev`), a published placeholder
    or a secret under `min_bytes` for the variable `name`. The error names the variable
    and what is wrong, never the value."""
    if environment == "dev":
        return secret
    problem = secret_problem(secret.get_secret_value(), min_bytes)
    if problem is not None:
        hint = (
            f"a random secret of at least {min_bytes} bytes (e.g. `openssl rand -base64 48`)"
            if min_bytes
            else "the real credential"
        )
        raise ValueError(f"{name} {problem}: set {hint} (LINTAS_ENVIRONMENT=dev is the dev stack)")
    return secret
