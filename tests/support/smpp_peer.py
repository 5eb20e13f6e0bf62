"""An SMS centre for the smpp provider's tests: a real SMPP v3.4 server in its own process.

Built on the smpp34 server (PyPI). Run as `python -m tests.support.smpp_peer PORT LOG`:
it accepts binds, answers each submit_sm with a message id (or an error for scripted
destinations), sends a delivery receipt (deliver_sm, esm_class 0x04) when one is
requested, and writes every bind and submit as a JSON line to LOG, so a test can see
exactly what went over the wire. Destinations ending in 000 are refused
(ESME_RINVDSTADR), in 999 throttled (ESME_RTHROTTLED).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import smpp34


def _log(path: Path, entry: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(entry) + "\n")
        out.flush()


async def serve(port: int, log: Path) -> None:
    """Run until killed."""
    server = smpp34.Server(host="127.0.0.1", port=port, system_id="LintasTestSMSC")
    await server.start()
    _log(log, {"event": "listening", "port": port})
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


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), Path(sys.argv[2])))
