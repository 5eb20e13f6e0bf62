"""`lintas sms waiting` on the real store: an SMS held back by quiet hours is listed with
when it goes (in the worker's time) and why; one already sent is not; no phone is shown."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from lintas_notify.adapters.message_repository import MongoMessageRepository
from lintas_notify.domain.message import OutgoingSms, SmsStatus
from lintas_shared.mongo import make_mongo_client
from lintas_tools.cli import main

from tests.support.notify import outgoing_sms
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

PHONE = "+6281234567890"


def _sms(message_id: str, reference: str) -> OutgoingSms:
    return outgoing_sms(message_id, reference, to=PHONE, to_sealed="enc:v1:sealed")


async def test_lists_the_sms_waiting_for_quiet_hours_to_end(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = f"notify_sms_cli_{uuid.uuid4().hex[:8]}"
    client = make_mongo_client(servers.mongodb_uri, app_name="test")
    try:
        messages = MongoMessageRepository(client[database]["messages"])
        now = datetime(2026, 12, 3, 15, 0, tzinfo=UTC)  # 22:00 in Jakarta
        morning = datetime(2026, 12, 4, 0, 0, tzinfo=UTC)  # 07:00 in Jakarta
        for message_id, reference in (("m-held", "LB-HELD1"), ("m-sent", "LB-SENT1")):
            await messages.schedule(
                _sms(message_id, reference), now, SmsStatus.SCHEDULED, time_zone="Asia/Jakarta"
            )
        await messages.defer("m-held", morning, "quiet hours", now)
        await client[database]["messages"].update_one(
            {"_id": "m-sent"}, {"$set": {"status": "sent", "send_after": now - timedelta(1)}}
        )
        monkeypatch.setenv("LINTAS_MONGODB_URI", servers.mongodb_uri)
        monkeypatch.setenv("LINTAS_NOTIFY_DATABASE", database)

        out = io.StringIO()
        assert await asyncio.to_thread(main, ["sms", "waiting", "--json"], out=out) == 0
        listed = json.loads(out.getvalue())
        assert listed == [
            {
                "case_reference": "LB-HELD1",
                "template": "case_received",
                "language": "id",
                "send_after": "2026-12-04T00:00:00+00:00",
                "local_send_after": "2026-12-04T07:00:00+07:00",
                "reason": "quiet hours",
            }
        ]
        text = io.StringIO()
        assert (
            await asyncio.to_thread(main, ["sms", "waiting", "--case", "LB-HELD1"], out=text) == 0
        )
        assert "goes at 2026-12-04T07:00:00+07:00  because: quiet hours" in text.getvalue()
        assert PHONE not in out.getvalue() + text.getvalue()
    finally:
        await client.drop_database(database)
        await client.close()
