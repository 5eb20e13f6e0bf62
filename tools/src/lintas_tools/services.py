"""Starting and stopping the services (and the console) as background processes."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
from lintas_deploy.processes import ManagedProcess, port_is_free
from lintas_shared.http_server import KEEP_ALIVE_SECONDS, UVICORN_HTTP


@dataclass(frozen=True)
class ServiceSpec:
    """One service: its name, app factory and port."""

    name: str
    factory: str
    port: int

    @property
    def url(self) -> str:
        """Where it listens."""
        return f"http://127.0.0.1:{self.port}"


def service_specs(env: Mapping[str, str]) -> list[ServiceSpec]:
    """The services with their ports from the environment: intake, referral, notify and
    the web console (8080, 8081, 8082, 8083). The console comes last: it calls intake
    and referral."""
    return [
        ServiceSpec(
            "intake",
            "lintas_intake.bootstrap:create_app",
            int(env.get("LINTAS_INTAKE_PORT", "8080")),
        ),
        ServiceSpec(
            "referral",
            "lintas_referral.bootstrap:create_app",
            int(env.get("LINTAS_REFERRAL_PORT", "8081")),
        ),
        ServiceSpec(
            "notify",
            "lintas_notify.bootstrap:create_app",
            int(env.get("LINTAS_NOTIFY_PORT", "8082")),
        ),
        ServiceSpec(
            "console",
            "lintas_console.bootstrap:create_app",
            int(env.get("LINTAS_CONSOLE_PORT", "8083")),
        ),
    ]


def start_service(
    spec: ServiceSpec, state_dir: Path, env: Mapping[str, str], timeout: float = 60.0
) -> ManagedProcess:
    """Start one service in the background and wait until its /readyz answers 200."""
    process = ManagedProcess(spec.name, state_dir)
    if not process.is_running():
        if not port_is_free("127.0.0.1", spec.port):
            raise RuntimeError(f"port {spec.port} for {spec.name} is taken by another process")
        process.start(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                spec.factory,
                "--host",
                "127.0.0.1",
                "--port",
                str(spec.port),
                "--timeout-graceful-shutdown",
                "20",
                "--timeout-keep-alive",
                str(KEEP_ALIVE_SECONDS),
                "--http",
                UVICORN_HTTP,
            ],
            env=dict(env),
        )
    wait_ready(spec, process, timeout)
    return process


def wait_ready(spec: ServiceSpec, process: ManagedProcess, timeout: float) -> None:
    """Poll /readyz until it answers 200; fail with the log tail if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.is_running():
            raise RuntimeError(f"{spec.name} exited during start-up:\n{process.log_tail()}")
        try:
            if httpx.get(f"{spec.url}/readyz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{spec.name} not ready after {timeout:.0f}s:\n{process.log_tail()}")


def stop_service(name: str, state_dir: Path) -> bool:
    """Stop a service we started (by its pid file); True if it was running."""
    return ManagedProcess(name, state_dir).stop()
