"""The dev stacks say they are the dev stack: nothing else defaults to it, so `lintas up`,
the fault-injection stack and the benchmark stack each set `LINTAS_ENVIRONMENT=dev` for
the services they start (and the services accept the placeholders only then)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lintas_bench.config import BenchConfig
from lintas_bench.stack import service_environment
from lintas_faults.stack import FaultStack, Ports
from lintas_tools import cli

pytestmark = pytest.mark.unit


@pytest.fixture
def shell(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A shell that says nothing about the environment."""
    monkeypatch.delenv("LINTAS_ENVIRONMENT", raising=False)
    monkeypatch.delenv("LINTAS_REFERRAL_WEBHOOK_ALLOW_LOOPBACK", raising=False)
    return monkeypatch


def test_lintas_up_says_dev(shell: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cli._dev_stack()
    env = cli._stack_env(tmp_path)
    assert env["LINTAS_ENVIRONMENT"] == "dev"
    assert env["LINTAS_REFERRAL_WEBHOOK_ALLOW_LOOPBACK"] == "true"


def test_lintas_up_keeps_an_environment_the_operator_chose(
    shell: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shell.setenv("LINTAS_ENVIRONMENT", "production")
    cli._dev_stack()
    env = cli._stack_env(tmp_path)
    assert env["LINTAS_ENVIRONMENT"] == "production"
    assert "LINTAS_REFERRAL_WEBHOOK_ALLOW_LOOPBACK" not in env


def test_the_fault_and_bench_stacks_say_dev(shell: pytest.MonkeyPatch, tmp_path: Path) -> None:
    faults = FaultStack(tmp_path, tmp_path, Ports(20000), keys={"sms_inbound_token": "t"})
    assert faults._common_env()["LINTAS_ENVIRONMENT"] == "dev"
    bench = service_environment(BenchConfig(), tmp_path, "pepper")
    assert bench["LINTAS_ENVIRONMENT"] == "dev"
