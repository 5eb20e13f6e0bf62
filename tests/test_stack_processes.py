"""`lintas-stack stop` (and so `make down`) leaves nothing it started in the process
table, not even a <defunct> entry: a server started by an earlier command is no child of
the one stopping it, and on these machines PID 1 collects such exited processes only
after a moment, which stop now waits for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import REPO_ROOT

pytestmark = pytest.mark.integration


def _stack(*args: str, state: Path) -> str:
    cache = os.environ.get("LINTAS_CACHE_DIR", str(REPO_ROOT / ".lintas" / "cache"))
    done = subprocess.run(
        [sys.executable, "-m", "lintas_deploy", *args, "--state-dir", str(state)],
        env={**os.environ, "LINTAS_CACHE_DIR": cache},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return done.stdout


def test_stop_leaves_no_defunct_server_behind(tmp_path: Path) -> None:
    port = os.environ.get("LINTAS_TEST_STACK_STOP_PORT", "27021")
    _stack("start", "ferretdb", "--mongo-port", port, state=tmp_path)
    pid = int((tmp_path / "run" / "ferretdb.pid").read_text())
    assert Path(f"/proc/{pid}").exists()  # started by another process: not our child

    _stack("stop", "ferretdb", state=tmp_path)

    assert not Path(f"/proc/{pid}").exists(), Path(f"/proc/{pid}/stat").read_text()
