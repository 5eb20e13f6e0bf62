"""Every HTTP dependency of every service is a coroutine function.

FastAPI runs a plain function dependency in a worker thread, for each request that uses
it: a thread hand-off (and a wait for the GIL back) to read an attribute of the app.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from lintas_console.bootstrap import create_app as console_app
from lintas_intake.bootstrap import create_app as intake_app
from lintas_notify.bootstrap import create_app as notify_app
from lintas_referral.bootstrap import create_app as referral_app
from starlette.routing import BaseRoute

pytestmark = pytest.mark.unit

APPS: dict[str, Callable[[], FastAPI]] = {
    "intake": intake_app,
    "referral": referral_app,
    "notify": notify_app,
    "console": console_app,
}


@pytest.fixture(autouse=True)
def _console_signing_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The console reads its token signing key when it is built.
    key = tmp_path / "console-signing-key.pem"
    key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
    )
    monkeypatch.setenv("LINTAS_CONSOLE_SIGNING_KEY_PATH", str(key))


def _routes(routes: Iterable[BaseRoute]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        # An included router (FastAPI keeps it whole, its routes under `original_router`).
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _routes(included.routes)


def _calls(dependant: Dependant) -> Iterator[Callable[..., object]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _runs_on_the_loop(call: Callable[..., object]) -> bool:
    # A security scheme (an API key header, a bearer token) is an object whose
    # `__call__` is the coroutine function.
    target = call if inspect.isfunction(call) else getattr(call, "__call__", call)  # noqa: B004
    return inspect.iscoroutinefunction(target)


@pytest.mark.parametrize("service", sorted(APPS))
def test_no_dependency_of_a_route_runs_in_a_worker_thread(service: str) -> None:
    app = APPS[service]()
    checked = [(r.path, call) for r in _routes(app.routes) for call in _calls(r.dependant)]
    assert len({path for path, _ in checked}) > 1, f"{service}: no routes with dependencies"
    plain = sorted(
        {f"{path}: {call.__qualname__}" for path, call in checked if not _runs_on_the_loop(call)}
    )
    assert plain == []
