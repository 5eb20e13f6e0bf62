"""A partner's webhook endpoint for tests: a real HTTP server on 127.0.0.1.

It verifies `X-Lintas-Signature` on its own (HMAC-SHA256 over "<t>.<body>", refusing
timestamps more than 5 minutes from its clock), and can fail on purpose.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receiver:
    """What the endpoint saw and how it should behave."""

    url: str = ""
    secret: str = ""
    fail_next: int = 0  # answer 500 to this many valid requests first
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    failed_on_purpose: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, header: str, body: bytes) -> str | None:
        """None when the signature is valid and fresh, else why not."""
        try:
            parts = dict(item.split("=", 1) for item in header.split(","))
            timestamp = int(parts["t"])
        except (KeyError, ValueError):
            return "malformed signature header"
        if abs(time.time() - timestamp) > 300:
            return "stale timestamp"
        mac = hmac.new(self.secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
        if not hmac.compare_digest(mac.hexdigest(), parts.get("v1", "")):
            return "bad signature"
        return None


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    """Run a receiver on a free port for the duration of the block."""
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            problem = receiver.check(self.headers.get("X-Lintas-Signature", ""), body)
            with receiver.lock:
                if problem is not None:
                    receiver.rejected.append(problem)
                    status = 401
                elif receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    receiver.failed_on_purpose += 1
                    status = 500
                else:
                    receiver.accepted.append(json.loads(body))
                    status = 204
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/lintas"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
