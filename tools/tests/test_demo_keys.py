"""The `lintas` tool's demo keys, demo people, console signing key and service layout."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from lintas_shared.person_tokens import (
    INTAKE_AUDIENCE,
    PersonClaims,
    PersonTokenVerifier,
    Role,
    issue_person_token,
)
from lintas_tools.demo import (
    DEMO_PEOPLE,
    KEY_NAMES,
    load_or_create_keys,
    load_or_create_people,
    load_or_create_signing_key,
)
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


def test_demo_people_sit_beside_the_keys_and_keep_their_passwords(tmp_path: Path) -> None:
    path = tmp_path / "demo-keys.json"
    keys = load_or_create_keys(path)
    people = load_or_create_people(path)
    assert set(people) == {
        "caseworker",
        "org_admin",
        "programme",
        "lawyer_hk",
        "lawyer_sg",
        "admin",
    }
    assert people["caseworker"]["email"] == "caseworker@demo.lintas.test"
    assert all(set(p) == {"email", "password"} for p in people.values())
    assert all(len(p["password"]) >= 12 for p in people.values())
    assert len({p["password"] for p in people.values()}) == len(people)
    # Re-running either keeps both: `make up` twice gives the same keys and passwords.
    assert load_or_create_keys(path) == keys
    assert load_or_create_people(path) == people
    assert json.loads(path.read_text()) == {**keys, "console": people}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_demo_people_cover_every_role_in_the_demo_organisations() -> None:
    assert {p.role for p in DEMO_PEOPLE} == set(Role)
    by_name = {p.name: p for p in DEMO_PEOPLE}
    assert by_name["caseworker"].organisation_id == "org-demo-ngo-id"
    assert by_name["programme"].organisation_id == "org-demo-ngo-id"
    assert by_name["lawyer_hk"].organisation_id == "org-demo-legal-hk"
    assert by_name["lawyer_sg"].organisation_id == "org-demo-legal-sg"
    assert by_name["admin"].organisation_id == "org-demo-admin"


def test_the_console_signing_key_is_made_once_and_readable_by_its_owner_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "console-signing-key.pem"
    public = load_or_create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    private = path.read_text()
    assert private.startswith("-----BEGIN PRIVATE KEY-----")
    assert load_or_create_signing_key(path) == public
    assert path.read_text() == private
    claims = PersonClaims("org-demo-ngo-id", "person-1", Role.CASEWORKER)
    token = issue_person_token(private, claims, INTAKE_AUDIENCE)
    assert PersonTokenVerifier(public, INTAKE_AUDIENCE).verify(token) == claims


def test_service_ports_default_to_8080_8083_and_follow_the_environment() -> None:
    assert [(s.name, s.port) for s in service_specs({})] == [
        ("intake", 8080),
        ("referral", 8081),
        ("notify", 8082),
        ("console", 8083),
    ]
    moved = service_specs({"LINTAS_REFERRAL_PORT": "9181", "LINTAS_CONSOLE_PORT": "9183"})
    assert moved[1].url == "http://127.0.0.1:9181"
    assert moved[3].url == "http://127.0.0.1:9183"
    assert moved[3].factory == "lintas_console.bootstrap:create_app"
