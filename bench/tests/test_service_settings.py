"""`--service-env`: a setting reaches every service and is printed with the results."""

from __future__ import annotations

from pathlib import Path

import pytest
from lintas_bench.config import from_args
from lintas_bench.stack import service_environment, stack_notes

pytestmark = pytest.mark.unit


def test_a_service_setting_overrides_the_benchs_own_and_is_listed() -> None:
    config = from_args(
        [
            "--service-env",
            "LINTAS_REFERRAL_LOAD_RECONCILE_INTERVAL_SECONDS=3600",
            "--service-env",
            "LINTAS_NOTIFY_QUIET_START=21:00",
        ]
    )
    env = service_environment(config, Path("/tmp/state"), "pepper")
    assert env["LINTAS_REFERRAL_LOAD_RECONCILE_INTERVAL_SECONDS"] == "3600"
    assert env["LINTAS_NOTIFY_QUIET_START"] == "21:00"  # over the bench's 00:00
    assert env["LINTAS_NOTIFY_QUIET_END"] == "00:00"
    notes = stack_notes(config)
    assert "LINTAS_NOTIFY_QUIET_START=21:00 for every service (--service-env)" in notes


@pytest.mark.parametrize("text", ["QUIET=1", "LINTAS_X", "LINTAS_A-B=1"])
def test_a_setting_that_is_not_lintas_name_equals_value_is_refused(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        from_args(["--service-env", text])
    assert "not LINTAS_NAME=value" in capsys.readouterr().err
