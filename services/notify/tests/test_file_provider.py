"""The embedded file provider: every message a line of its own, durable when `send`
returns; messages sent side by side share one append."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from lintas_notify.adapters.file_provider import FileSmsProvider
from lintas_notify.domain.message import OutgoingSms

from tests.support.notify import outgoing_sms

pytestmark = pytest.mark.unit


def _sms(n: int) -> OutgoingSms:
    return outgoing_sms(f"sms-{n}", f"LB-{n:05d}", to=f"+6281234567{n:03d}")


async def test_messages_sent_side_by_side_are_each_one_line_in_fewer_appends(
    tmp_path: Path,
) -> None:
    provider = FileSmsProvider(tmp_path / "sms" / "outbox.jsonl")
    ids = await asyncio.gather(*(provider.send(_sms(n)) for n in range(20)))

    lines = [
        json.loads(line) for line in (tmp_path / "sms" / "outbox.jsonl").read_text().splitlines()
    ]
    assert sorted(line["client_reference"] for line in lines) == sorted(
        f"sms-{n}" for n in range(20)
    )
    assert {line["client_reference"]: line["message_id"] for line in lines} == {
        f"sms-{n}": ids[n] for n in range(20)
    }
    assert len(set(ids)) == 20
    assert 1 <= provider.appends < 20
    assert await provider.find_sent("sms-7") == ids[7]

    # One alone is appended at once, as before.
    alone = await provider.send(_sms(99))
    assert await provider.find_sent("sms-99") == alone


async def test_a_failed_append_fails_every_send_it_carried(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the outbox's directory should be")
    provider = FileSmsProvider(blocked / "outbox.jsonl")
    results = await asyncio.gather(
        *(provider.send(_sms(n)) for n in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, OSError) for r in results)
