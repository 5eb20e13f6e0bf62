"""`lintas` parses its command line without loading the client libraries: `--help`,
`status` and `import` start in a fraction of a second, not two."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from lintas_tools.cli import main

pytestmark = pytest.mark.unit

HEAVY = ("aiokafka", "faststream", "pymongo", "uvicorn", "lintas_tools.dead_letters")

PROBE = """
import json, sys
from lintas_tools.cli import parser
for argv in (["import", "cases.csv"], ["dlq", "list"], ["sms", "waiting"], ["org", "list"]):
    parser().parse_args(argv)
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def test_parsing_every_command_loads_no_kafka_store_or_server_library() -> None:
    probe = PROBE.format(heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == []


def test_the_probe_sees_a_library_that_is_loaded() -> None:
    # The check above would pass vacuously if the probe could not see modules.
    probe = "import pymongo\n" + PROBE.format(heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == ["pymongo"]


def test_a_placeholder_secret_outside_the_dev_stack_is_named_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LINTAS_ENVIRONMENT", "production")
    monkeypatch.setenv("LINTAS_API_KEY_PEPPER", "change-me")

    assert main(["org", "list"]) == 1

    err = capsys.readouterr().err
    assert err.startswith("lintas: ")
    assert "LINTAS_API_KEY_PEPPER" in err
    assert "Traceback" not in err
    assert "errors.pydantic.dev" not in err
