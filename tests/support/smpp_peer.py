"""An SMS centre for the smpp provider's tests: a real SMPP v3.4 server in its own process.

Built on the smpp34 server (PyPI). Run as `python -m tests.support.smpp_peer PORT LOG`:
it accepts binds, answers each submit_sm with a message id (or an error for scripted
destinations), sends a delivery receipt (deliver_sm, esm_class 0x04) when one is
requested, and writes every bind and submit as a JSON line to LOG, so a test can see
exactly what went over the wire. Destinations ending in 000 are refused
(ESME_RINVDSTADR), in 999 throttled (ESME_RTHROTTLED); for those ending in 777 the
delivery receipt is sent before the submit_sm is answered (an SMS centre whose receipt
overtakes its own response).

smpp34 answers enquire_link inside its Rust core and tells Python nothing about it, so
the clients connect to PORT through a small PDU-aware relay in this same process, in
front of the smpp34 server (on a second, internal port). The relay logs every
enquire_link a client sends and every enquire_link_resp the server answers it with.
SIGUSR1 makes the SMS centre stop answering enquire_link on the connections open at that
moment (the relay drops them, logged as `"answered": false`), as a hung SMSC does;
connections made afterwards are served normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import struct
import sys
from pathlib import Path
from typing import Any

import smpp34

ENQUIRE_LINK = 0x00000015
ENQUIRE_LINK_RESP = 0x80000015
HEADER = struct.Struct(">IIII")


def _log(path: Path, entry: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(entry) + "\n")
        out.flush()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Relay:
    """Clients' connections to the smpp34 server, PDU by PDU."""

    def __init__(self, inner_port: int, log: Path) -> None:
        self.inner_port, self.log = inner_port, log
        self.links: list[dict[str, bool]] = []

    def stop_answering_enquire_link(self) -> None:
        for link in self.links:
            link["mute"] = True
        _log(self.log, {"event": "enquire_link_muted", "connections": len(self.links)})

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        link = {"mute": False}
        self.links.append(link)
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.inner_port)
        except OSError:
            client_w.close()
            return
        _log(self.log, {"event": "connect"})
        pumps = [
            asyncio.create_task(self._pump(client_r, server_w, link, upstream=True)),
            asyncio.create_task(self._pump(server_r, client_w, link, upstream=False)),
        ]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for writer in (client_w, server_w):
            writer.close()
        self.links.remove(link)
        _log(self.log, {"event": "disconnect"})

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: dict[str, bool],
        *,
        upstream: bool,
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                header = await reader.readexactly(HEADER.size)
                length, command_id, _, sequence = HEADER.unpack(header)
                pdu = header + await reader.readexactly(length - HEADER.size)
                if upstream and command_id == ENQUIRE_LINK:
                    entry = {"event": "enquire_link", "sequence": sequence}
                    if link["mute"]:
                        _log(self.log, {**entry, "answered": False})
                        continue
                    _log(self.log, {**entry, "answered": True})
                if not upstream and command_id == ENQUIRE_LINK_RESP:
                    _log(self.log, {"event": "enquire_link_resp", "sequence": sequence})
                writer.write(pdu)
                await writer.drain()


async def serve(port: int, log: Path) -> None:
    """Run until killed."""
    inner_port = _free_port()
    server = smpp34.Server(host="127.0.0.1", port=inner_port, system_id="LintasTestSMSC")
    await server.start()
    relay = Relay(inner_port, log)
    front = await asyncio.start_server(relay.handle, "127.0.0.1", port)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, relay.stop_answering_enquire_link)
    _log(log, {"event": "listening", "port": port})
    async with front:
        await _smsc(server, log)


async def _smsc(server: smpp34.Server, log: Path) -> None:
    sessions: dict[str, smpp34.Esme] = {}
    count = 0
    while True:
        event = await server.next()
        if isinstance(event, smpp34.Esme):
            sessions[event.session_id] = event
            _log(log, {"event": "bind", "system_id": event.system_id})
        elif isinstance(event, smpp34.Unbound):
            sessions.pop(event.session_id, None)
            _log(log, {"event": "unbind"})
        elif isinstance(event, smpp34.SubmitSmEvent):
            destination = event.destination_addr
            entry = {
                "event": "submit_sm",
                "destination": destination,
                "source": event.source_addr,
                "data_coding": event.data_coding,
                "esm_class": event.esm_class,
                "registered_delivery": event.registered_delivery,
                "short_message": event.short_message.hex(),
            }
            # Logged before answering: once the client has its answer, the line is there.
            if destination.endswith("000"):
                _log(log, {**entry, "answer": "ESME_RINVDSTADR"})
                event.reject(smpp34.ESME_RINVDSTADR)
                continue
            if destination.endswith("999"):
                _log(log, {**entry, "answer": "ESME_RTHROTTLED"})
                event.reject(smpp34.ESME_RTHROTTLED)
                continue
            count += 1
            message_id = f"smsc-{count}"
            receipt_first = destination.endswith("777")
            if not receipt_first:
                _log(log, {**entry, "answer": message_id})
                event.accept(message_id=message_id)
            esme = sessions.get(event.session_id)
            if event.registered_delivery and esme is not None and esme.can_receive:
                receipt = (
                    f"id:{message_id} sub:001 dlvrd:001 submit date:2609161000 "
                    "done date:2609161000 stat:DELIVRD err:000 text:"
                )
                await esme.deliver_sm(
                    event.source_addr,
                    receipt.encode(),
                    source_addr=destination,
                    esm_class=0x04,
                )
                _log(log, {"event": "receipt", "message_id": message_id})
            if receipt_first:
                _log(log, {**entry, "answer": message_id})
                event.accept(message_id=message_id)


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), Path(sys.argv[2])))
