"""Console settings, from `LINTAS_CONSOLE_*` (and the common `LINTAS_*`) variables."""

from __future__ import annotations

from pathlib import Path

from lintas_shared.settings import CommonSettings
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsoleSettings(BaseSettings):
    """Everything the console reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="LINTAS_CONSOLE_", extra="ignore", hide_input_in_errors=True
    )

    common: CommonSettings = Field(default_factory=CommonSettings)
    host: str = "127.0.0.1"
    port: int = 8083
    database: str = "lintas_console"
    #: Where people open the console; one-time password links start with it.
    public_url: str = "http://127.0.0.1:8083"
    intake_url: str = "http://127.0.0.1:8080"
    referral_url: str = "http://127.0.0.1:8081"
    #: Seconds the console waits for intake or referral before telling the person.
    service_timeout_seconds: float = 10.0
    #: Ed25519 private key (PEM) that signs the person tokens intake and referral verify.
    signing_key_path: Path = Path(".lintas/console-signing-key.pem")
    #: Lawyers and admins must use a second factor; the dev stack turns this off.
    require_second_factor: bool = True
    #: Session cookies get `Secure` (set behind TLS).
    secure_cookies: bool = False
    session_idle_minutes: int = 30
    session_absolute_hours: int = 12
    #: Failed sign-ins before an account, or an address, waits.
    sign_in_attempts: int = 5
    sign_in_window_minutes: int = 15
    #: Hours a one-time password link stays valid.
    invitation_hours: int = 72
    default_language: str = "id"
