"""The `lintas` tool's demo keys and service layout."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from lintas_tools.demo import KEY_NAMES, load_or_create_keys
from lintas_tools.services import service_specs

pytestmark = pytest.mark.unit


def test_demo_keys_are_created_once_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "demo-keys.json"
    first = load_or_create_keys(path)
    second = load_or_create_keys(path)
    assert first == second
    assert set(first) == {*KEY_NAMES, "sms_inbound_token"}
    assert len(set(first.values())) == len(first)
    assert json.loads(path.read_text()) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_service_ports_default_to_8080_8082_and_follow_the_environment() -> None:
    assert [(s.name, s.port) for s in service_specs({})] == [
        ("intake", 8080),
        ("referral", 8081),
        ("notify", 8082),
    ]
    moved = service_specs({"LINTAS_REFERRAL_PORT": "9181"})
    assert moved[1].url == "http://127.0.0.1:9181"
