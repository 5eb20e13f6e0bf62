"""Notify settings, from `LINTAS_NOTIFY_*` (and the common `LINTAS_*`) variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from lintas_shared.settings import CommonSettings
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class NotifySettings(BaseSettings):
    """Everything the notify service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="LINTAS_NOTIFY_", extra="ignore")

    common: CommonSettings = Field(default_factory=CommonSettings)
    host: str = "127.0.0.1"
    port: int = 8082
    database: str = "lintas_notify"
    consumer_group: str = "lintas-notify"
    sms_provider: Literal["file"] = "file"
    sms_outbox_path: Path = Path(".lintas/sms-outbox.jsonl")
    default_language: str = "en"
