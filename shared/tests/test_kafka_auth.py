"""Who each Kafka client logs in as, and that its password is a real secret outside dev."""

from __future__ import annotations

import pytest
from lintas_shared.kafka_auth import KafkaAuth, client_auth, service_auth
from lintas_shared.settings import CommonSettings
from pydantic import ValidationError

pytestmark = pytest.mark.unit

_SECRETS = (
    "LINTAS_MASTER_KEY",
    "LINTAS_API_KEY_PEPPER",
    "LINTAS_PHONE_HASH_KEY",
    "LINTAS_AUDIT_KEY",
)


def test_a_service_logs_in_as_itself_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINTAS_ENVIRONMENT", "dev")
    monkeypatch.delenv("LINTAS_KAFKA_USERNAME", raising=False)
    auth = service_auth(CommonSettings(), "notify")
    assert (auth.username, auth.mechanism, auth.security_protocol) == (
        "notify",
        "SCRAM-SHA-512",
        "SASL_PLAINTEXT",
    )
    monkeypatch.setenv("LINTAS_KAFKA_USERNAME", "notify-eu")
    assert service_auth(CommonSettings(), "notify").username == "notify-eu"


def test_tools_log_in_as_the_admin_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LINTAS_KAFKA_USERNAME", raising=False)
    assert client_auth().username == "admin"
    monkeypatch.setenv("LINTAS_KAFKA_USERNAME", "ops")
    monkeypatch.setenv("LINTAS_KAFKA_PASSWORD", "s3cret")
    options = client_auth().client_options()
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("ops", "s3cret")


def test_the_password_is_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINTAS_KAFKA_PASSWORD", "s3cret-value")
    assert "s3cret-value" not in repr(client_auth())


def test_production_refuses_the_kafka_password_placeholder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LINTAS_ENVIRONMENT", "production")
    for name in _SECRETS:
        monkeypatch.setenv(name, f"a-real-{name.lower()}-" + "x" * 32)
    monkeypatch.delenv("LINTAS_KAFKA_PASSWORD", raising=False)
    with pytest.raises(ValidationError, match="LINTAS_KAFKA_PASSWORD is a published placeholder"):
        CommonSettings()
    monkeypatch.setenv("LINTAS_KAFKA_PASSWORD", "short")
    with pytest.raises(ValidationError, match="LINTAS_KAFKA_PASSWORD is too short"):
        CommonSettings()
    monkeypatch.setenv("LINTAS_KAFKA_PASSWORD", "k" * 40)
    assert CommonSettings().kafka_password.get_secret_value() == "k" * 40


def test_a_java_client_gets_the_same_login_as_properties() -> None:
    auth = KafkaAuth("ops", 'pa"ss\\word', "SCRAM-SHA-256", "SASL_SSL")
    assert auth.java_client_properties() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="ops" password="pa\\"ss\\\\word";',
    }
    plain = KafkaAuth("ops", "pw", "PLAIN").java_client_properties()["sasl.jaas.config"]
    assert plain.startswith("org.apache.kafka.common.security.plain.PlainLoginModule required")
