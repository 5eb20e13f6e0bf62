"""The smpp provider against a real SMPP v3.4 server running as its own process."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lintas_notify.adapters.smpp_provider import SmppSmsProvider, parse_receipt
from lintas_notify.domain.message import OutgoingSms
from lintas_notify.domain.smpp_parts import decode_gsm7
from lintas_notify.ports import ProviderRejectedError, ProviderUnavailableError
from lintas_shared.mongo import Document
from pymongo import AsyncMongoClient

from tests.support.fixtures import case_submitted
from tests.support.kafka import eventually
from tests.support.notify import Notify
from tests.support.servers import REPO_ROOT

pytestmark = pytest.mark.integration


class Peer:
    """The SMS centre process: started, stopped and restarted by pid, on one port."""

    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.smpp_peer", str(self.port), str(self.log)],
            cwd=REPO_ROOT,
        )
        listening = len([e for e in self.entries() if e["event"] == "listening"]) + 1
        deadline = time.monotonic() + 30
        while len([e for e in self.entries() if e["event"] == "listening"]) < listening:
            assert self.process.poll() is None, "the SMPP peer exited"
            assert time.monotonic() < deadline, "the SMPP peer did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # a dropped connection, as an SMSC crash makes it
            self.process.wait(timeout=10)

    def stop_answering_enquire_link(self) -> None:
        """The SMS centre hangs: enquire_link on the open connections goes unanswered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR1)

    def entries(self, event: str | None = None) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        found = [json.loads(line) for line in self.log.read_text().splitlines() if line]
        return [e for e in found if event is None or e["event"] == event]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Peer]:
    server = Peer(free_port(), tmp_path / "smsc.jsonl")
    server.start()
    yield server
    server.stop()


def sms(body: str, to: str = "+6281234567890", message_id: str = "m-1") -> OutgoingSms:
    return OutgoingSms(
        id=message_id,
        case_id="case-1",
        case_reference="LB-7K3Q9",
        to=to,
        to_sealed=None,
        phone_hash="h",
        body=body,
        language="id",
        template="case_received",
        encoding="GSM-7",
        segments=1,
        causing_event="/lintas/intake#e1",
    )


def provider(peer: Peer, **kwargs: Any) -> SmppSmsProvider:
    return SmppSmsProvider(
        "127.0.0.1",
        peer.port,
        system_id="lintas",
        password="secret",
        source_addr="Lintas",
        **kwargs,
    )


async def test_bind_and_submit_gsm7_with_a_receipt(peer: Peer) -> None:
    receipts: list[tuple[str, str, str | None]] = []

    async def on_receipt(message_id: str, status: str, reason: str | None) -> None:
        receipts.append((message_id, status, reason))

    smpp = provider(peer, on_receipt=on_receipt)
    try:
        body = "Lintas: Kasus Anda sudah kami terima. Nomor kasus Anda LB-7K3Q9 {ok}."
        message_id = await smpp.send(sms(body))
        await eventually(lambda: receipts, timeout=120)
    finally:
        await smpp.close()
    [bind] = peer.entries("bind")
    assert bind["system_id"] == "lintas"
    [submit] = peer.entries("submit_sm")
    assert submit["destination"] == "6281234567890"
    assert (submit["data_coding"], submit["esm_class"], submit["registered_delivery"]) == (
        0,
        0,
        1,
    )
    assert decode_gsm7(bytes.fromhex(submit["short_message"])) == body
    assert message_id == submit["answer"]
    assert receipts == [(message_id, "delivered", None)]


async def test_a_long_ucs2_message_goes_as_concatenated_parts(peer: Peer) -> None:
    body = "Lintas: kasus LB-7K3Q9 " + "雇" + " sudah diterima oleh pengacara. " * 3
    smpp = provider(peer)
    try:
        message_id = await smpp.send(sms(body))
    finally:
        await smpp.close()
    parts = peer.entries("submit_sm")
    assert len(parts) == 2
    assert all((p["data_coding"], p["esm_class"]) == (8, 0x40) for p in parts)
    udh = [bytes.fromhex(p["short_message"])[:6] for p in parts]
    assert udh[0][:5] == udh[1][:5] == bytes([5, 0, 3, udh[0][3], 2])
    assert [u[5] for u in udh] == [1, 2]
    text = b"".join(bytes.fromhex(p["short_message"])[6:] for p in parts).decode("utf-16-be")
    assert text == body
    assert [p["registered_delivery"] for p in parts] == [0, 1]  # the receipt for the whole
    assert message_id == parts[-1]["answer"]


async def test_a_transmitter_bind_submits_too(peer: Peer) -> None:
    smpp = provider(peer, bind_type="TX")
    try:
        await smpp.send(sms("Lintas: TX"))
    finally:
        await smpp.close()
    [submit] = peer.entries("submit_sm")
    assert decode_gsm7(bytes.fromhex(submit["short_message"])) == "Lintas: TX"


async def test_refused_and_throttled_destinations(peer: Peer) -> None:
    smpp = provider(peer)
    try:
        with pytest.raises(ProviderRejectedError, match="0x0000000B"):
            await smpp.send(sms("Lintas", to="+6281200000000"))
        with pytest.raises(ProviderUnavailableError, match="0x00000058"):
            await smpp.send(sms("Lintas", to="+6281200000999"))
    finally:
        await smpp.close()


async def until_unavailable(smpp: SmppSmsProvider) -> ProviderUnavailableError:
    """Send until the provider notices the SMS centre is gone (a bounded number of tries)."""
    for _ in range(50):
        try:
            await smpp.send(sms("Lintas: dua"))
        except ProviderUnavailableError as exc:
            return exc
        await asyncio.sleep(0.1)
    raise AssertionError("a dead SMS centre was never noticed")


async def test_after_a_dropped_connection_it_binds_again(peer: Peer) -> None:
    smpp = provider(peer)
    try:
        await smpp.send(sms("Lintas: satu"))
        peer.stop()
        failure = await until_unavailable(smpp)
        assert "failed" in failure.reason  # the submit or the bind that found it gone
        peer.start()
        await smpp.send(sms("Lintas: tiga"))
    finally:
        await smpp.close()
    assert smpp.binds == 2
    assert [decode_gsm7(bytes.fromhex(e["short_message"])) for e in peer.entries("submit_sm")][
        -1
    ] == "Lintas: tiga"


async def test_it_keeps_the_link_alive_with_enquire_link(peer: Peer) -> None:
    smpp = provider(peer, enquire_link_interval=0.2)
    try:
        await smpp.send(sms("Lintas: satu"))
        await eventually(lambda: len(peer.entries("enquire_link_resp")) >= 3, timeout=120)
        await smpp.send(sms("Lintas: dua"))
    finally:
        await smpp.close()
    asked = peer.entries("enquire_link")
    assert len(asked) >= 3
    assert all(e["answered"] for e in asked)
    # Every enquire_link went out on the one session, each with its own sequence number.
    assert len({e["sequence"] for e in asked}) == len(asked)
    assert (smpp.binds, smpp.drops) == (1, 0)
    assert len(peer.entries("bind")) == 1
    assert len(peer.entries("submit_sm")) == 2


async def test_an_unanswered_enquire_link_drops_the_session_and_it_binds_again(
    peer: Peer,
) -> None:
    smpp = provider(peer, enquire_link_interval=0.2, response_timeout=0.5, rebind_delay=0.1)
    try:
        await smpp.send(sms("Lintas: satu"))
        await eventually(lambda: peer.entries("enquire_link_resp"), timeout=120)
        peer.stop_answering_enquire_link()
        # Nobody sends meanwhile: the keep-alive alone notices, and it binds again.
        await eventually(lambda: len(peer.entries("bind")) == 2, timeout=120)
        await eventually(lambda: smpp.bound, timeout=120)
        await smpp.send(sms("Lintas: dua"))
    finally:
        await smpp.close()
    assert [e["answered"] for e in peer.entries("enquire_link")].count(False) >= 1
    assert (smpp.binds, smpp.drops) == (2, 1)
    muted = peer.entries("enquire_link_muted")
    assert muted == [{"event": "enquire_link_muted", "connections": 1}]
    assert peer.entries("disconnect")  # the client gave the hung connection up
    [_, second] = peer.entries("submit_sm")
    assert decode_gsm7(bytes.fromhex(second["short_message"])) == "Lintas: dua"
    assert second["answer"] == "smsc-2"


async def test_through_the_dispatcher_the_receipt_marks_it_delivered(
    peer: Peer, notify: Notify
) -> None:
    smpp = provider(peer)
    notify.rewire(smpp)
    smpp.on_receipt = notify.conversations.receipt
    try:
        key = await notify.vault.create("case-smpp")
        await notify.handlers.on_case_submitted(case_submitted("case-smpp", key=key))

        async def delivered() -> bool:
            [record] = await notify.messages.for_case("case-smpp")
            return bool(record["status"] == "delivered")

        await eventually(delivered, timeout=120)
    finally:
        await smpp.close()
    [record] = await notify.messages.for_case("case-smpp")
    assert record["provider"] == "smpp"
    assert record["provider_message_id"] == peer.entries("submit_sm")[0]["answer"]


async def test_a_receipt_before_the_submit_response_is_kept_and_applied(
    peer: Peer, notify: Notify, mongo: AsyncMongoClient[Document]
) -> None:
    smpp = provider(peer)
    notify.rewire(smpp)
    smpp.on_receipt = notify.conversations.receipt
    try:
        key = await notify.vault.create("case-smpp-early")
        submitted = case_submitted("case-smpp-early", key=key, phone="+6281200000777")
        await notify.handlers.on_case_submitted(submitted)
    finally:
        await smpp.close()
    # The SMS centre reported delivery, and had it acknowledged, before it answered.
    order = [e["event"] for e in peer.entries() if e["event"] in ("receipt", "submit_sm")]
    assert order == ["receipt", "submit_sm"]
    [record] = await notify.messages.for_case("case-smpp-early")
    assert record["status"] == "delivered"
    assert [h["status"] for h in record["status_history"]][-2:] == ["sent", "delivered"]
    assert await mongo[notify.database]["early_receipts"].count_documents({}) == 0


def test_receipt_text_is_read() -> None:
    assert parse_receipt("id:abc sub:001 dlvrd:000 stat:UNDELIV err:034 text:") == (
        "abc",
        "failed",
        "UNDELIV err:034",
    )
    assert parse_receipt("hello") is None
