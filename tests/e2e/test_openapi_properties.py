"""Property-based tests of each running service, generated from its own OpenAPI document
(schemathesis): for requests built from the schema, valid and invalid, no answer is a
5xx, every status is documented for its operation, and every body matches the
documented schema and content type.

Requests carry a valid key of the kind each API is for (an NGO's for intake, a legal
partner's for referral, the provider token for notify), so they get past authentication
and reach the handlers; `test_access_matrix` covers the callers who should not.
Examples per operation are bounded, so the run is bounded too.
"""

from __future__ import annotations

from collections.abc import Callable
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


def _check(case: Any, stack: Stack, service: str, headers: dict[str, str]) -> None:
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
