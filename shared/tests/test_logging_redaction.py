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
    for secret in (
        "Siti Rahayu",
        "6281299990001",
        "812 9999 0002",
        "6281299990003",
        "0812-9999-0004",
        "123456789",
    ):
        assert secret not in text
    assert lines[0]["case_id"] == "case-9"
    assert lines[0]["service"] == "test"
    assert lines[0]["event"] == "case stored"


def test_dates_addresses_and_ids_stay_readable(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("test")
    try:
        get_logger("t").info(
            "bound to 127.0.0.1:8080",
            when="2026-11-23T19:48:28Z",
            case_id="0e0f4283-7832-4b09-b1bb-9be086b4a2f1",
            offset=12345,
        )
        [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
    assert line["event"] == "bound to 127.0.0.1:8080"
    assert line["when"] == "2026-11-23T19:48:28Z"
    assert line["case_id"] == "0e0f4283-7832-4b09-b1bb-9be086b4a2f1"
    assert line["offset"] == 12345
    assert line["timestamp"].startswith("20")


def test_uuids_stay_whole_even_with_a_run_of_digits(capsys: pytest.CaptureFixture[str]) -> None:
    event_id = "00d9be3d-85a7-4ecd-91ba-37e12345678a"
    configure_logging("test")
    try:
        get_logger("t").info(
            f"parked {event_id} after +6281299990005 called",
            event_id=event_id,
            note=f"{event_id}081299990006",
        )
        [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
    assert line["event_id"] == event_id
    assert line["event"] == f"parked {event_id} after [redacted] called"
    assert "081299990006" not in line["note"]


def test_uvicorns_access_lines_are_not_written(capsys: pytest.CaptureFixture[str]) -> None:
    # The request's own `request handled` line is the access log; uvicorn's repeated
    # it with the raw path and its query string (a name searched for, an external_ref).
    configure_logging("test")
    try:
        # As uvicorn's access logger writes a request line (its own format and arguments).
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d',
            "127.0.0.1:5000",
            "GET",
            "/v1/cases?external_ref=NGO-Siti-Rahayu&reason=harbour",
            "1.1",
            200,
        )
        logging.getLogger("uvicorn.error").info("Application startup complete.")
        lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
    assert [line["event"] for line in lines] == ["Application startup complete."]


def test_a_line_names_its_logger_and_level_and_lines_below_the_level_are_dropped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("test", "INFO")
    try:
        log = get_logger("lintas.test")
        log.debug("below the level")
        log.info("shown", n=1)
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
        lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
    assert [line["event"] for line in lines] == ["shown", "failed"]
    assert [line["level"] for line in lines] == ["info", "error"]
    assert {line["logger"] for line in lines} == {"lintas.test"}
    assert "ValueError: boom" in lines[1]["exception"]
