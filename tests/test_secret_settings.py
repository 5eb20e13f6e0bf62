"""A deployment refuses to start with a published placeholder or a short secret.

Nothing defaults to the dev stack: only `LINTAS_ENVIRONMENT=dev`, said by `lintas up` and
the test harnesses, accepts the `dev-only-` placeholders. Every secret of the four
services' settings is checked; the error names the variable and what is wrong, never
the value.
"""

from __future__ import annotations

import os

import pytest
from lintas_console.settings import ConsoleSettings
from lintas_intake.settings import IntakeSettings
from lintas_notify.settings import NotifySettings
from lintas_referral.settings import ReferralSettings
from lintas_shared.settings import DEV_SECRET_PREFIX, CommonSettings
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings

pytestmark = pytest.mark.unit


def test_every_shipped_placeholder_is_checked() -> None:
    assert {"LINTAS_API_KEY_PEPPER", "LINTAS_MASTER_KEY", "LINTAS_PHONE_HASH_KEY"} <= set(
        COMMON_SECRETS
    )


#: Every secret all services read: CommonSettings' fields that ship a placeholder (one
#: added later is covered as it comes).
COMMON_SECRETS = [
    f"LINTAS_{name.upper()}"
    for name, info in CommonSettings.model_fields.items()
    if isinstance(info.default, SecretStr)
    and info.default.get_secret_value().startswith(DEV_SECRET_PREFIX)
]
#: Every secret a service checks, with the settings class that reads it (and what else
#: must be set for the check to apply).
SECRETS: list[tuple[type[BaseSettings], str, dict[str, str]]] = [
    *((cls, name, {}) for cls in (IntakeSettings, ConsoleSettings) for name in COMMON_SECRETS),
    (ReferralSettings, "LINTAS_REFERRAL_OPERATOR_TOKEN", {}),
    (NotifySettings, "LINTAS_NOTIFY_INBOUND_TOKEN", {}),
    (NotifySettings, "LINTAS_NOTIFY_HTTP_AUTH_TOKEN", {"LINTAS_NOTIFY_SMS_PROVIDER": "http"}),
    (NotifySettings, "LINTAS_NOTIFY_SMPP_PASSWORD", {"LINTAS_NOTIFY_SMS_PROVIDER": "smpp"}),
]
#: Credentials the SMS provider issues (an SMPP password is at most 8 characters):
#: placeholders are refused, short ones are not.
PROVIDER_CREDENTIALS = {"LINTAS_NOTIFY_HTTP_AUTH_TOKEN", "LINTAS_NOTIFY_SMPP_PASSWORD"}
ALL_SECRET_NAMES = {name for _, name, _ in SECRETS}
IDS = [f"{cls.__name__}-{name}" for cls, name, _ in SECRETS]


def _real(name: str) -> str:
    return f"{name.lower()}-{'r' * 40}"


@pytest.fixture
def deployment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A deployment's environment: nothing says dev, every secret is real."""
    for name in list(os.environ):
        if name.startswith("LINTAS_"):
            monkeypatch.delenv(name)
    for name in ALL_SECRET_NAMES:
        monkeypatch.setenv(name, _real(name))
    return monkeypatch


def test_the_default_is_not_the_dev_stack(deployment: pytest.MonkeyPatch) -> None:
    assert CommonSettings().environment == "production"
    deployment.delenv("LINTAS_MASTER_KEY")
    with pytest.raises(ValidationError, match="LINTAS_MASTER_KEY is a published placeholder"):
        CommonSettings()


def test_the_dev_stack_says_so_and_accepts_the_placeholders(
    deployment: pytest.MonkeyPatch,
) -> None:
    for name in ALL_SECRET_NAMES:
        deployment.delenv(name)
    deployment.setenv("LINTAS_ENVIRONMENT", "dev")
    for cls, _, extra in SECRETS:
        for key, value in extra.items():
            deployment.setenv(key, value)
        cls()


@pytest.mark.parametrize(("settings", "name", "extra"), SECRETS, ids=IDS)
def test_a_placeholder_is_refused_naming_the_variable(
    deployment: pytest.MonkeyPatch,
    settings: type[BaseSettings],
    name: str,
    extra: dict[str, str],
) -> None:
    for key, value in extra.items():
        deployment.setenv(key, value)
    settings()  # every secret real: it starts
    for placeholder in ("dev-only-" + "p" * 40, "change-me"):
        deployment.setenv(name, placeholder)
        with pytest.raises(ValidationError) as refused:
            settings()
        message = str(refused.value)
        assert f"{name} is a published placeholder" in message
        assert placeholder not in message


@pytest.mark.parametrize(("settings", "name", "extra"), SECRETS, ids=IDS)
def test_a_short_secret_is_refused_naming_the_variable(
    deployment: pytest.MonkeyPatch,
    settings: type[BaseSettings],
    name: str,
    extra: dict[str, str],
) -> None:
    for key, value in extra.items():
        deployment.setenv(key, value)
    short = "k7Qz" * 7 + "abc"  # 31 bytes
    deployment.setenv(name, short)
    if name in PROVIDER_CREDENTIALS:
        settings()
        return
    with pytest.raises(ValidationError) as refused:
        settings()
    message = str(refused.value)
    assert f"{name} is too short (under 32 bytes)" in message
    assert short not in message
    deployment.setenv(name, short + "d")  # 32 bytes
    settings()


def test_a_previous_master_key_is_checked_too(deployment: pytest.MonkeyPatch) -> None:
    deployment.setenv("LINTAS_MASTER_KEY_ID", "2")
    deployment.setenv("LINTAS_MASTER_KEYS_PREVIOUS", "1=dev-only-master-key")
    with pytest.raises(ValidationError, match=r"LINTAS_MASTER_KEYS_PREVIOUS \(id 1\) is a pub"):
        CommonSettings()
    deployment.setenv("LINTAS_MASTER_KEYS_PREVIOUS", "2=" + "o" * 40)
    with pytest.raises(ValidationError, match="repeats LINTAS_MASTER_KEY_ID"):
        CommonSettings()
    deployment.setenv("LINTAS_MASTER_KEYS_PREVIOUS", "no-separator")
    with pytest.raises(ValidationError, match="id=secret pairs"):
        CommonSettings()
    deployment.setenv("LINTAS_MASTER_KEYS_PREVIOUS", "1=" + "o" * 40)
    assert set(CommonSettings().master_keys()) == {"1", "2"}


def test_loopback_webhooks_are_refused_outside_the_dev_stack(
    deployment: pytest.MonkeyPatch,
) -> None:
    deployment.setenv("LINTAS_REFERRAL_WEBHOOK_ALLOW_LOOPBACK", "true")
    with pytest.raises(ValidationError, match="LINTAS_REFERRAL_WEBHOOK_ALLOW_LOOPBACK"):
        ReferralSettings()
    deployment.setenv("LINTAS_ENVIRONMENT", "dev")
    assert ReferralSettings().webhook_allow_loopback
