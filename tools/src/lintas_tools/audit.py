"""`lintas audit verify`: check intake's audit chain and referral's chain of partner reads,
each against its signed checkpoint and, optionally, against a witness file.

The witness file holds the heads (entry count and last MAC) an earlier intact check saw.
It lives wherever the operator keeps it, off the database: a rollback of the chain and
its checkpoint to an older, genuinely signed state is refused because the chain no
longer reaches the witnessed head (or differs at it).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lintas_intake.adapters.audit_trail import AuditTrail
from lintas_referral.adapters.audit import MongoAuditTrail
from lintas_shared.audit_chain import Anchor, ChainReport
from lintas_shared.mongo import make_mongo_client


@dataclass(frozen=True)
class AuditTarget:
    """Where the chains, their checkpoints and the witness are, and the audit key."""

    mongodb_uri: str
    intake_database: str
    referral_database: str
    checkpoint_database: str
    audit_key: str
    witness: Path | None = None


def _witnessed(path: Path | None) -> dict[str, Anchor]:
    if path is None or not path.exists():
        return {}
    heads = json.loads(path.read_text())
    return {
        chain: Anchor(int(head["count"]), str(head["last_mac"]), "witness file")
        for chain, head in heads.items()
    }


async def verify_audit(target: AuditTarget) -> dict[str, Any]:
    """Verify both chains; `{"intact": bool, "chains": [report, …]}`. After an intact
    check the witness file (if any) is updated to the heads found."""
    client = make_mongo_client(target.mongodb_uri, app_name="lintas-cli")
    checkpoints = client[target.checkpoint_database]["audit_checkpoints"]
    witnessed = _witnessed(target.witness)
    try:
        intake = AuditTrail(client[target.intake_database]["audit"], checkpoints, target.audit_key)
        referral = MongoAuditTrail(
            client[target.referral_database]["audit"], checkpoints, target.audit_key
        )
        reports: list[ChainReport] = []
        for name, trail in (("intake", intake), ("referral", referral)):
            anchors = [witnessed[name]] if name in witnessed else []
            reports.append(await trail.verify(anchors))
    finally:
        await client.close()
    intact = all(r.intact for r in reports)
    if intact and target.witness is not None:
        heads = {r.chain: r.head for r in reports}
        target.witness.write_text(json.dumps(heads, indent=2) + "\n")
    return {"intact": intact, "chains": [dataclasses.asdict(r) for r in reports]}
