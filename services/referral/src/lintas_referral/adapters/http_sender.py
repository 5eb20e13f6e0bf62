"""Sends webhook POSTs over HTTP(S) to an address already checked, and resolves names.

No second lookup: the request goes to the checked IP address itself (the URL's host
replaced by it), with the original `Host` header and, for https, the original host name
as TLS server name (httpcore's `sni_hostname` request extension), so the certificate is
verified against the partner's host name while the TCP connection goes to the address
that passed `address_refused`. Each host name has its own connection pool: a pool is
keyed by address, and a TLS connection verified for one partner's name must not carry
another partner's delivery to the same address (a shared CDN, say).
"""

from __future__ import annotations

import asyncio
import socket

import httpx

from lintas_referral.domain.webhooks import IPAddress


class HttpxSender:
    """A client per host name; no redirects (a signed body must not wander elsewhere), no
    proxies from the environment (the request must go to the checked address)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._timeout = timeout
        self._clients: dict[str, httpx.AsyncClient] = {}

    def _client(self, host: str) -> httpx.AsyncClient:
        client = self._clients.get(host)
        if client is None:
            client = httpx.AsyncClient(
                timeout=self._timeout, follow_redirects=False, trust_env=False
            )
            self._clients[host] = client
        return client

    async def post(self, url: str, address: IPAddress, body: bytes, headers: dict[str, str]) -> int:
        """POST to `address` as if to `url`; return the status code (network errors raise)."""
        original = httpx.URL(url)
        pinned = original.copy_with(host=str(address))
        extensions = {"sni_hostname": original.host} if original.scheme == "https" else {}
        response = await self._client(original.host).post(
            pinned,
            content=body,
            headers={**headers, "Host": original.netloc.decode("ascii")},
            extensions=extensions,
        )
        return response.status_code

    async def close(self) -> None:
        """Close the connection pools."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()


class SystemResolver:
    """The host's resolver (getaddrinfo), with a time limit."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._timeout = timeout

    async def resolve(self, host: str, port: int) -> list[str]:
        """Every address `host` resolves to (empty if it does not)."""
        loop = asyncio.get_running_loop()
        try:
            answers = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), self._timeout
            )
        except (OSError, TimeoutError, UnicodeError):
            return []
        return [str(info[4][0]) for info in answers]
