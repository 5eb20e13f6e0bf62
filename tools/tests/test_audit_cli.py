"""`lintas audit verify` on the real store: both chains (intake's trail and referral's
partner reads), their signed checkpoints, and the witness file that catches a rollback."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from lintas_intake.adapters.audit_trail import AuditTrail
from lintas_intake.domain.organisation import Organisation, OrganisationKind
from lintas_referral.adapters.audit import MongoAuditTrail
from lintas_shared.mongo import Document
from lintas_tools.cli import main
from pymongo import AsyncMongoClient

from tests.support.servers import Servers

pytestmark = pytest.mark.integration
KEY = "test-audit-key-held-by-the-services-only"
ADMIN = Organisation(id="org-admin", name="Admin", kind=OrganisationKind.ADMIN, country="ID")


async def verify(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    """Run `lintas audit verify ARGV` (in a thread: it runs its own event loop)."""
    capsys.readouterr()
    code = await asyncio.to_thread(partial(main, ["audit", "verify", *argv]))
    answer = json.loads(capsys.readouterr().out)
    assert isinstance(answer, dict)
    return code, answer


async def test_verify_checks_both_chains_and_a_witness_catches_a_rollback(
    servers: Servers,
    mongo: AsyncMongoClient[Document],
    database_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    intake_db, referral_db, vault_db = (f"{database_name}_{s}" for s in ("i", "r", "kv"))
    for name, value in {
        "LINTAS_MONGODB_URI": servers.mongodb_uri,
        "LINTAS_INTAKE_DATABASE": intake_db,
        "LINTAS_REFERRAL_DATABASE": referral_db,
        "LINTAS_KEYVAULT_DATABASE": vault_db,
        "LINTAS_AUDIT_KEY": KEY,
    }.items():
        monkeypatch.setenv(name, value)
    checkpoints = mongo[vault_db]["audit_checkpoints"]
    intake = AuditTrail(mongo[intake_db]["audit"], checkpoints, KEY)
    referral = MongoAuditTrail(mongo[referral_db]["audit"], checkpoints, KEY)
    witness = tmp_path / "audit-witness.json"
    try:
        for n in range(2):
            await intake.record(ADMIN, f"case-{n}", "read", ["worker.name"], None)
            await referral.record_access(
                case_id=f"case-{n}",
                referral_id=f"ref-{n}",
                organisation_id="org-hk",
                fields=["worker.full_name"],
                at=datetime.now(UTC),
            )
        old = await checkpoints.find_one({"_id": "referral"})  # genuinely signed, count 2
        await referral.record_access(
            case_id="case-2",
            referral_id="ref-2",
            organisation_id="org-hk",
            fields=["worker.full_name"],
            at=datetime.now(UTC),
        )

        code, answer = await verify(capsys, "--witness", str(witness))
        assert code == 0, answer
        assert [(c["chain"], c["intact"], c["entries"]) for c in answer["chains"]] == [
            ("intake", True, 2),
            ("referral", True, 3),
        ]
        assert json.loads(witness.read_text())["referral"]["count"] == 3

        # The newest partner read is deleted and the older checkpoint put back: the store
        # alone looks whole again; the operator's witness does not.
        await mongo[referral_db]["audit"].delete_one({"_id": 3})
        await checkpoints.replace_one({"_id": "referral"}, old or {})
        code, answer = await verify(capsys)
        assert code == 0  # the documented limit without a witness
        code, answer = await verify(capsys, "--witness", str(witness))
        assert code == 1
        intake_report, referral_report = answer["chains"]
        assert intake_report["intact"]
        assert (referral_report["intact"], referral_report["missing"]) == (False, [3])
        assert referral_report["problem"] == (
            "entry 3 is missing (the witness file counts 3, the chain ends at 2)"
        )
        assert json.loads(witness.read_text())["referral"]["count"] == 3  # kept as it was
    finally:
        for name in (intake_db, referral_db, vault_db):
            await mongo.drop_database(name)
