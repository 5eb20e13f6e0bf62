"""Who a Kafka client logs in as: SASL/SCRAM credentials for aiokafka and FastStream.

Every service has its own principal (`lintas_shared.kafka_access` says what each may
do); tools and tests log in as the admin. `LINTAS_KAFKA_USERNAME` and
`LINTAS_KAFKA_PASSWORD` choose the principal, `LINTAS_KAFKA_SASL_MECHANISM` and
`LINTAS_KAFKA_SECURITY_PROTOCOL` how it logs in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from lintas_shared.settings import DEV_SECRET_PREFIX, CommonSettings

#: The principal provisioning, `lintas dlq` and the tests log in as (a super user).
ADMIN_PRINCIPAL = "admin"
#: Every principal's password on a dev or test broker (`lintas_deploy.kafka.DEV_PASSWORD`).
DEV_KAFKA_PASSWORD = DEV_SECRET_PREFIX + "kafka-password"

SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
SecurityProtocol = Literal["SASL_PLAINTEXT", "SASL_SSL"]


@dataclass(frozen=True)
class KafkaAuth:
    """One principal's credentials and how it logs in."""

    username: str
    password: str = field(repr=False)
    mechanism: SaslMechanism = "SCRAM-SHA-512"
    security_protocol: SecurityProtocol = "SASL_PLAINTEXT"

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client."""
        return {
            "security_protocol": self.security_protocol,
            "sasl_mechanism": self.mechanism,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password,
        }

    def java_client_properties(self) -> dict[str, str]:
        """The same for a Java client (Kafka's own tools): properties for a config file."""
        module = (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if self.mechanism == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )

        def quoted(value: str) -> str:
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

        return {
            "security.protocol": self.security_protocol,
            "sasl.mechanism": self.mechanism,
            "sasl.jaas.config": (
                f"{module} required username={quoted(self.username)} "
                f"password={quoted(self.password)};"
            ),
        }

    def security(self) -> BaseSecurity:
        """The same, as FastStream's `security=` of a KafkaBroker."""
        use_ssl = self.security_protocol == "SASL_SSL"
        if self.mechanism == "SCRAM-SHA-512":
            return SASLScram512(self.username, self.password, use_ssl=use_ssl)
        if self.mechanism == "SCRAM-SHA-256":
            return SASLScram256(self.username, self.password, use_ssl=use_ssl)
        return SASLPlaintext(self.username, self.password, use_ssl=use_ssl)


class KafkaClientSettings(BaseSettings):
    """`LINTAS_KAFKA_*` login settings alone, for tools and tests (no service settings)."""

    model_config = SettingsConfigDict(env_prefix="LINTAS_KAFKA_", extra="ignore")

    username: str | None = None
    password: SecretStr = SecretStr(DEV_KAFKA_PASSWORD)
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    security_protocol: SecurityProtocol = "SASL_PLAINTEXT"


def kafka_auth(
    username: str | None,
    password: SecretStr,
    mechanism: SaslMechanism,
    security_protocol: SecurityProtocol,
    *,
    default_username: str,
) -> KafkaAuth:
    """Credentials from settings; `default_username` when none is set."""
    return KafkaAuth(
        username or default_username, password.get_secret_value(), mechanism, security_protocol
    )


def client_auth(default_username: str = ADMIN_PRINCIPAL) -> KafkaAuth:
    """The credentials `LINTAS_KAFKA_*` give a tool or test (the admin unless set)."""
    s = KafkaClientSettings()
    return kafka_auth(
        s.username,
        s.password,
        s.sasl_mechanism,
        s.security_protocol,
        default_username=default_username,
    )


def service_auth(common: CommonSettings, service: str) -> KafkaAuth:
    """A service's credentials: `LINTAS_KAFKA_USERNAME`, else its own principal."""
    return kafka_auth(
        common.kafka_username,
        common.kafka_password,
        common.kafka_sasl_mechanism,
        common.kafka_security_protocol,
        default_username=service,
    )
