"""Personal data never reaches a log line."""

from __future__ import annotations

import json
import logging

import pytest
import structlog
from lintas_shared.logging import configure_logging, get_logger

pytestmark = pytest.mark.unit


def test_personal_values_are_redacted_from_structlog_and_stdlib_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("test")
    try:
        get_logger("t").info(
            "case stored",
            full_name="Siti Rahayu Contoh",
            phone="+6281299990001",
            note="call +62 812 9999 0002 tomorrow",
            case_id="case-9",
        )
        logging.getLogger("some.library").warning("sent to +6281299990003")
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
    text = json.dumps(lines)
    for secret in ("Siti Rahayu", "6281299990001", "812 9999 0002", "6281299990003"):
        assert secret not in text
    assert lines[0]["case_id"] == "case-9"
    assert lines[0]["service"] == "test"
    assert lines[0]["event"] == "case stored"
