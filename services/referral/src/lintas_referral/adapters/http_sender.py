"""Sends webhook POSTs over HTTP(S)."""

from __future__ import annotations

import httpx


class HttpxSender:
    """One shared client; no redirects (a signed body must not wander elsewhere)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST and return the status code; network errors raise."""
        response = await self._client.post(url, content=body, headers=headers)
        return response.status_code

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
