"""Intake settings, from `LINTAS_INTAKE_*` (and the common `LINTAS_*`) variables."""

from __future__ import annotations

from lintas_shared.settings import CommonSettings
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IntakeSettings(BaseSettings):
    """Everything the intake service reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="LINTAS_INTAKE_", extra="ignore", hide_input_in_errors=True
    )

    common: CommonSettings = Field(default_factory=CommonSettings)
    host: str = "127.0.0.1"
    port: int = 8080
    database: str = "lintas_intake"
    consumer_group: str = "lintas-intake"
    #: Counts of cases below this are suppressed in the indicators (shown as "<5").
    indicators_min_cell: int = Field(default=5, ge=1, le=1000)
    #: Cases whose last write stays in memory (as stored: sealed), so the next change of
    #: one skips its read; 0 turns it off.
    remember_cases: int = Field(default=2000, ge=0, le=100_000)
