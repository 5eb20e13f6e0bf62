"""`log_context`: what a request or an event binds to its log lines, and only there."""

from __future__ import annotations

import json

import pytest
import structlog
from lintas_shared.logging import configure_logging, get_logger, log_context

pytestmark = pytest.mark.unit


def test_lines_inside_carry_the_values_and_what_was_bound_before_comes_back(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("test")
    log = get_logger("t")
    try:
        structlog.contextvars.bind_contextvars(case_id="outer")
        with log_context(case_id="inner", event_id="e-1"):
            log.info("inside")
            with log_context(event_id="e-2"):
                log.info("nested")
            log.info("inside again")
        log.info("after")
        lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
    assert [(x["event"], x.get("case_id"), x.get("event_id")) for x in lines] == [
        ("inside", "inner", "e-1"),
        ("nested", "inner", "e-2"),
        ("inside again", "inner", "e-1"),
        ("after", "outer", None),
    ]
