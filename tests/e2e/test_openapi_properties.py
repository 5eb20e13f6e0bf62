"""Property-based tests of each running service, generated from its own OpenAPI document
(schemathesis), in two ways:

- schemathesis's pytest integration: for requests built from the schema, valid and
  invalid, no answer is a 5xx, every status is documented for its operation, and every
  body matches the documented schema and content type;
- schemathesis's own runner with every check (`schemathesis run --checks all`: also
  that what the schema allows is accepted and what it forbids refused, required headers,
  `Allow` on OPTIONS and 405, auth, stateful sequences), through all its phases
  (examples, coverage, fuzzing, stateful) with a fixed seed and a bounded number of
  examples per operation: under 2.5 minutes for the three services.
  `schemathesis.toml` beside this file adds only statuses that depend on a resource's
  state (410, 412, 428) and, for three operations, the 422 of a rule across fields.

Requests carry a valid key of the kind each API is for (an NGO's for intake, a legal
partner's for referral, the provider token for notify), so they get past authentication
and reach the handlers; `test_access_matrix` covers the callers who should not.
Examples per operation are bounded, so the run is bounded too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from lintas_intake.bootstrap import create_app as intake_app
from lintas_notify.bootstrap import create_app as notify_app
from lintas_referral.bootstrap import create_app as referral_app
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.openapi import from_dict

from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: Generated requests per operation: enough to reach every field's edge cases a few
#: times, few enough to keep the run to about a minute per service.
EXAMPLES = 25


def _schema(create_app: Callable[[], FastAPI]) -> Any:
    """The service's OpenAPI document, only the API's own operations (probes and the
    AsyncAPI document are not inputs). Built from the app object, without starting it,
    so that tests can be generated at collection; test_access_matrix checks that the
    running services serve the same operations."""
    document = create_app().openapi()
    return from_dict(document).include(path_regex=r"^/v1/(?!asyncapi)")


INTAKE = _schema(intake_app)
REFERRAL = _schema(referral_app)
NOTIFY = _schema(notify_app)


#: Headers that frame the HTTP message: a generated value (`content-length: D,`) is
#: refused by the HTTP server with a 400 before any API sees the request.
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "host", "connection"})


def _check(case: Any, stack: Stack, service: str, headers: dict[str, str]) -> None:
    if case.headers:
        case.headers = {k: v for k, v in case.headers.items() if k.lower() not in FRAMING_HEADERS}
    case.call_and_validate(base_url=stack.urls[service], headers=headers, checks=CHECKS)


PROPERTIES = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,  # no example database left behind in the checkout
)


@INTAKE.parametrize()
@PROPERTIES
def test_intake_api_holds_its_contract(case: Any, stack: Stack) -> None:
    _check(case, stack, "intake", {"X-API-Key": stack.keys["ngo_id"]})


@REFERRAL.parametrize()
@PROPERTIES
def test_referral_api_holds_its_contract(case: Any, stack: Stack) -> None:
    _check(case, stack, "referral", {"X-API-Key": stack.keys["legal_hk"]})


@NOTIFY.parametrize()
@PROPERTIES
def test_notify_api_holds_its_contract(case: Any, stack: Stack) -> None:
    _check(case, stack, "notify", {"X-Lintas-Provider-Token": stack.keys["sms_inbound_token"]})


# --- schemathesis's own runner, every check ---------------------------------------------

CONFIG = Path(__file__).with_name("schemathesis.toml")
#: Per operation and phase; the seed makes a failure reproducible with the same command.
RUNNER_EXAMPLES = 20
SEED = 20260916
#: The API's own operations, as above.
API_PATHS = r"^/v1/(?!asyncapi)"


def _runner_headers(stack: Stack, service: str) -> str:
    return {
        "intake": f"X-API-Key: {stack.keys['ngo_id']}",
        "referral": f"X-API-Key: {stack.keys['legal_hk']}",
        "notify": f"X-Lintas-Provider-Token: {stack.keys['sms_inbound_token']}",
    }[service]


@pytest.mark.parametrize("service", ["intake", "referral", "notify"])
def test_schemathesis_with_every_check_finds_nothing(
    service: str, stack: Stack, tmp_path: Path
) -> None:
    executable = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert executable is not None, "schemathesis is a dev dependency: uv sync"
    command = [
        executable,
        "--config-file",
        str(CONFIG),
        "run",
        f"{stack.urls[service]}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(RUNNER_EXAMPLES),
        "--seed",
        str(SEED),
        "--include-path-regex",
        API_PATHS,
        "--header",
        _runner_headers(stack, service),
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--workers",
        "1",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    started = time.monotonic()
    # In a directory of its own: the runner leaves a cache folder where it runs.
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=360)
    took = time.monotonic() - started
    assert done.returncode == 0, (
        f"schemathesis --checks all against {service} failed after {took:.0f} s "
        f"(seed {SEED}):\n{done.stdout[-20000:]}\n{done.stderr[-2000:]}"
    )
