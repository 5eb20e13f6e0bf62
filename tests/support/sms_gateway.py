"""A local SMS gateway in the shape of Twilio's Messages API, for the http provider's tests.

A real HTTP server on 127.0.0.1 (a free port chosen by the OS) in a background thread:
form POST with basic auth, a message sid back, `Idempotency-Key` honoured, status
callbacks posted to the given URL, and scripted failures (429 with Retry-After, 500s).
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode


@dataclass
class Scripted:
    """One scripted answer instead of accepting: a status, headers and a JSON body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, object] = field(default_factory=dict)


@dataclass
class GatewayState:
    """What the gateway received and how it will answer."""

    account: str
    token: str
    callback_token: str | None = None
    accepted: list[dict[str, str]] = field(default_factory=list)
    requests: int = 0
    script: list[Scripted] = field(default_factory=list)
    by_key: dict[str, str] = field(default_factory=dict)
    callbacks: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(state: GatewayState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return  # keep test output clean

        def _answer(self, status: int, body: dict[str, object], headers: dict[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if self.path != f"/2010-04-01/Accounts/{state.account}/Messages.json":
                self._answer(404, {"code": 20404, "message": "not found"}, {})
                return
            expected = (
                "Basic " + base64.b64encode(f"{state.account}:{state.token}".encode()).decode()
            )
            if self.headers.get("Authorization") != expected:
                self._answer(401, {"code": 20003, "message": "Authenticate"}, {})
                return
            with state.lock:
                state.requests += 1
                scripted = state.script.pop(0) if state.script else None
                key = self.headers.get("Idempotency-Key")
                known = state.by_key.get(key) if key else None
            if scripted is not None:
                self._answer(scripted.status, scripted.body, scripted.headers)
                return
            if known is not None:
                self._answer(200, {"sid": known, "status": "queued"}, {})
                return
            if not form.get("To", "").startswith("+"):
                self._answer(400, {"code": 21211, "message": "Invalid 'To' Phone Number"}, {})
                return
            sid = f"SM{uuid.uuid4().hex}"
            with state.lock:
                state.accepted.append({**form, "sid": sid, "key": key or ""})
                if key:
                    state.by_key[key] = sid
            self._answer(201, {"sid": sid, "status": "queued", "to": form["To"]}, {})
            if form.get("StatusCallback"):
                threading.Thread(
                    target=self._callback, args=(form["StatusCallback"], sid), daemon=True
                ).start()

        def _callback(self, url: str, sid: str) -> None:
            data = urlencode({"MessageSid": sid, "MessageStatus": "delivered"}).encode()
            request = urllib.request.Request(url, data=data, method="POST")  # noqa: S310
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
            if state.callback_token:
                request.add_header("X-Lintas-Provider-Token", state.callback_token)
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                state.callbacks.append(response.status)

    return Handler


@contextmanager
def sms_gateway(
    account: str = "ACtest",
    token: str = "gateway-secret",  # noqa: S107  (a test gateway's own credential)
    callback_token: str | None = None,
) -> Iterator[tuple[str, GatewayState]]:
    """Run the gateway; yields its base URL and its state. Stopped on exit."""
    state = GatewayState(account, token, callback_token)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
