"""`lintas sms waiting`: the SMS notify holds back, when each will go and why.

An SMS can wait for the worker's quiet hours to end (21:00-07:00 in the country she is in,
by default), for a per-worker or provider limit, or for a retry after the provider failed.
This lists them from notify's store: case reference, template, language, when it goes
(UTC and the worker's local time) and the last reason. Never the phone or the text.

Notify's database is $LINTAS_NOTIFY_DATABASE [lintas_notify] at $LINTAS_MONGODB_URI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lintas_shared.mongo import make_mongo_client

DEFAULT_NOTIFY_DATABASE = "lintas_notify"


@dataclass(frozen=True)
class WaitingSms:
    """One held-back SMS, as an operator may see it."""

    case_reference: str | None
    template: str
    language: str
    send_after: str
    local_send_after: str | None
    reason: str | None


def waiting_from_document(doc: Mapping[str, Any]) -> WaitingSms:
    """What may be shown of a scheduled message document (no phone, no text)."""
    send_after: datetime = doc["send_after"].replace(tzinfo=UTC)
    local = None
    if doc.get("time_zone"):
        try:
            local = send_after.astimezone(ZoneInfo(doc["time_zone"])).isoformat()
        except ZoneInfoNotFoundError:
            local = None
    reasons = [entry.get("reason") for entry in doc.get("status_history", [])]
    return WaitingSms(
        case_reference=doc.get("case_reference"),
        template=doc["template"],
        language=doc["language"],
        send_after=send_after.isoformat(),
        local_send_after=local,
        reason=next((r for r in reversed(reasons) if r), None),
    )


async def list_waiting(mongodb_uri: str, database: str, reference: str | None) -> list[WaitingSms]:
    """Scheduled messages, soonest first (notify's status + send_after index)."""
    query: dict[str, Any] = {"status": "scheduled"}
    if reference:
        query["case_reference"] = reference
    client = make_mongo_client(mongodb_uri, app_name="lintas-sms-cli")
    try:
        cursor = (
            client[database]["messages"]
            .find(
                query,
                {
                    "case_reference": 1,
                    "template": 1,
                    "language": 1,
                    "send_after": 1,
                    "time_zone": 1,
                    "status_history": 1,
                },
            )
            .sort("send_after", 1)
        )
        return [waiting_from_document(doc) async for doc in cursor]
    finally:
        await client.close()


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run `lintas sms waiting`; prints one line per message, or JSON."""
    found = asyncio.run(
        list_waiting(
            os.environ.get("LINTAS_MONGODB_URI", "mongodb://127.0.0.1:27017/"),
            os.environ.get("LINTAS_NOTIFY_DATABASE", DEFAULT_NOTIFY_DATABASE),
            args.reference,
        )
    )
    if args.json:
        out.write(json.dumps([asdict(sms) for sms in found], indent=2) + "\n")
        return 0
    if not found:
        out.write("no SMS waiting\n")
    for sms in found:
        when = sms.local_send_after or sms.send_after
        out.write(
            f"{sms.case_reference or '-'}  {sms.template} ({sms.language})  "
            f"goes at {when}  because: {sms.reason or 'scheduled'}\n"
        )
    return 0
