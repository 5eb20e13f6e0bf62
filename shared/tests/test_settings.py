"""Settings refuse development placeholder secrets outside the dev stack."""

from __future__ import annotations

import pytest
from lintas_shared import topics
from lintas_shared.consumer import FetchPolicy
from lintas_shared.settings import CommonSettings
from pydantic import ValidationError

pytestmark = pytest.mark.unit


def test_production_refuses_placeholder_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ("LINTAS_MASTER_KEY", "LINTAS_API_KEY_PEPPER", "LINTAS_PHONE_HASH_KEY")
    for name in (*names, "LINTAS_AUDIT_KEY", "LINTAS_KAFKA_PASSWORD"):
        monkeypatch.setenv(name, f"a-real-{name.lower()}-" + "x" * 32)
    monkeypatch.setenv("LINTAS_ENVIRONMENT", "production")
    for name in names:
        with monkeypatch.context() as one:
            one.delenv(name)
            with pytest.raises(ValidationError, match=f"{name} is a published placeholder"):
                CommonSettings()
    assert CommonSettings().environment == "production"


def test_dev_accepts_the_placeholders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINTAS_ENVIRONMENT", "dev")
    monkeypatch.delenv("LINTAS_MASTER_KEY", raising=False)
    assert CommonSettings().master_key.get_secret_value().startswith("dev-only-")


def test_the_consoles_public_key_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LINTAS_CONSOLE_PUBLIC_KEY", raising=False)
    assert CommonSettings().console_public_key is None  # bearer tokens are refused
    pem = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"
    monkeypatch.setenv("LINTAS_CONSOLE_PUBLIC_KEY", pem)
    assert CommonSettings().console_public_key == pem


def test_the_fetch_policy_comes_from_the_environment_and_referrals_wait_longer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LINTAS_ENVIRONMENT", "dev")
    monkeypatch.delenv("LINTAS_KAFKA_FETCH_MAX_WAIT_MS", raising=False)
    monkeypatch.setenv("LINTAS_KAFKA_FETCH_MIN_BYTES", "1024")
    policy = FetchPolicy.from_settings(CommonSettings())
    assert policy == FetchPolicy(max_wait_ms=100, min_bytes=1024)
    # Notify reads both topics: a case's offer should rarely reach it before the case.
    assert policy.max_wait_for(topics.CASES) == 100
    assert policy.max_wait_for(topics.NOTIFICATIONS) == 100
    assert policy.max_wait_for(topics.REFERRALS) == 250
    monkeypatch.setenv("LINTAS_KAFKA_FETCH_MAX_WAIT_MS", "0")  # answer at the first record
    assert FetchPolicy.from_settings(CommonSettings()).max_wait_for(topics.REFERRALS) == 0
    monkeypatch.setenv("LINTAS_KAFKA_FETCH_MAX_WAIT_MS", "-1")
    with pytest.raises(ValidationError, match="kafka_fetch_max_wait_ms"):
        CommonSettings()


def test_a_shutdown_step_must_outlast_the_handlers_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINTAS_ENVIRONMENT", "dev")
    monkeypatch.delenv("LINTAS_SHUTDOWN_STEP_SECONDS", raising=False)
    assert CommonSettings().shutdown_step_seconds == 20.0
    monkeypatch.setenv("LINTAS_SHUTDOWN_STEP_SECONDS", "15")  # the handlers' grace: too short
    with pytest.raises(ValidationError, match="shutdown_step_seconds"):
        CommonSettings()
    monkeypatch.setenv("LINTAS_SHUTDOWN_STEP_SECONDS", "45")
    assert CommonSettings().shutdown_step_seconds == 45.0
