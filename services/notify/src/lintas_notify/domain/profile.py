"""A case as notify knows it: how to reach the worker, and the case's stage."""

from __future__ import annotations

from dataclasses import dataclass

from lintas_notify.domain.stage import Stage


@dataclass(frozen=True)
class CaseProfile:
    """A case as notify needs it."""

    case_id: str
    reference: str
    phone_sealed: str
    phone_hash: str
    language: str
    current_country: str
    time_zone: str | None
    sms_consent: bool
    stage: Stage
