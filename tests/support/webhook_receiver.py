"""A partner's webhook endpoint for tests: a real HTTP server on 127.0.0.1.

It does what a partner's receiver would, with the libraries a partner would use:
verifies each delivery with the `standardwebhooks` package (`webhook-id`,
`webhook-timestamp`, `webhook-signature`, the `whsec_` secret; timestamps more than 5
minutes from its clock refused), refuses a `webhook-id` it has already accepted (a
replay), and reads the body with the CloudEvents SDK (structured mode,
`application/cloudevents+json`). With `scheme="lintas-v1"` it verifies the deprecated
`X-Lintas-Signature` instead, by hand, as partners built before did. It can fail on
purpose, and keeps every request it saw so a test can send one again, changed.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass(frozen=True)
class Seen:
    """One request as it arrived."""

    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """What the endpoint saw and how it should behave."""

    url: str = ""
    secret: str = ""
    scheme: Literal["standard", "lintas-v1"] = "standard"
    fail_next: int = 0  # answer 500 to this many valid requests first
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)
    failed_on_purpose: int = 0
    seen_ids: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, headers: dict[str, str], body: bytes) -> str | None:
        """None when the delivery is authentic, fresh and new, else why not."""
        if self.scheme == "lintas-v1":
            return _check_lintas_v1(self.secret, headers.get("x-lintas-signature", ""), body)
        try:
            Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError as exc:
            reason = str(exc)
            if "too old" in reason or "too new" in reason:
                return "stale timestamp"
            return "bad signature" if "signature" in reason.lower() else reason
        if headers["webhook-id"] in self.seen_ids:
            return "replayed id"
        return None

    def event(self, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        """The body read as a CloudEvent by the SDK: its attributes and data."""
        event = from_http_event(HTTPMessage(headers=headers, body=body))
        return {**event.get_attributes(), "data": event.get_data()}


def _check_lintas_v1(secret: str, header: str, body: bytes) -> str | None:
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return "malformed signature header"
    if abs(time.time() - timestamp) > 300:
        return "stale timestamp"
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
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
            headers = {k.lower(): v for k, v in self.headers.items()}
            with receiver.lock:
                receiver.requests.append(Seen(headers, body))
                problem = receiver.check(headers, body)
                if problem is not None:
                    receiver.rejected.append(problem)
                    status = 401
                elif receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    receiver.failed_on_purpose += 1
                    status = 500
                else:
                    receiver.accepted.append(receiver.event(headers, body))
                    if receiver.scheme == "standard":
                        receiver.seen_ids.add(headers["webhook-id"])
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
