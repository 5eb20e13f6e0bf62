"""The http provider: a gateway in the shape of Twilio's Messages API.

`POST {base}/2010-04-01/Accounts/{account}/Messages.json` with a form (`To`, `From`,
`Body`, `StatusCallback`) and basic auth answers 201 with the message's `sid`. Statuses
come back later as form posts to the status callback (our /v1/delivery-receipts).

Never twice: each request carries `Idempotency-Key: <client reference>`, the message's
stable id. A gateway that honours it answers a repeated request with the first
message's sid instead of sending again; the Messages API offers no lookup by client
reference, so `find_sent` cannot tell and that key is what makes a resend safe.
"""

from __future__ import annotations

from collections.abc import Collection

import httpx

from lintas_notify.domain.message import OutgoingSms
from lintas_notify.ports import ProviderRejectedError, ProviderUnavailableError


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None  # an HTTP date or nothing: fall back to our own backoff


def _reason(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(data, dict):
        code, message = data.get("code"), data.get("message")
        return f"HTTP {response.status_code} {code or ''} {message or ''}".strip()
    return f"HTTP {response.status_code}"


class HttpSmsProvider:
    """Sends through a Twilio-shaped HTTP gateway."""

    name = "http"

    def __init__(
        self,
        base_url: str,
        *,
        account: str,
        auth_token: str,
        sender: str,
        status_callback: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account}/Messages.json"
        self._auth = httpx.BasicAuth(account, auth_token)
        self._sender = sender
        self._status_callback = status_callback
        self._timeout = timeout

    async def send(self, sms: OutgoingSms) -> str:
        """Post the message; returns the gateway's sid."""
        form = {"To": sms.to, "From": self._sender, "Body": sms.body}
        if self._status_callback:
            form["StatusCallback"] = self._status_callback
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.post(
                    self._url,
                    data=form,
                    auth=self._auth,
                    headers={"Idempotency-Key": sms.id},
                )
        except httpx.TimeoutException as exc:
            raise ProviderUnavailableError(f"timeout: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            # Refused before a request went out, or cut off: the key makes a retry safe.
            raise ProviderUnavailableError(f"transport: {type(exc).__name__}") from None
        if response.status_code in (200, 201):
            sid = response.json().get("sid")
            if not isinstance(sid, str) or not sid:
                raise ProviderUnavailableError("gateway answered without a message sid")
            return sid
        if response.status_code == 429 or response.status_code == 503:
            raise ProviderUnavailableError(
                _reason(response), retry_after=_retry_after(response), maybe_accepted=False
            )
        if response.status_code >= 500:
            raise ProviderUnavailableError(_reason(response), retry_after=_retry_after(response))
        # 400 (invalid number, unverified sender…), 401/403 (our credentials): permanent
        # for this message; the provider's words are kept as the reason.
        raise ProviderRejectedError(_reason(response))

    async def find_sent(self, client_reference: str) -> str | None:
        """The Messages API cannot look up by client reference: resend with the same key."""
        return None

    async def forget(self, client_references: Collection[str]) -> None:
        """Nothing kept here; the gateway's own records are under its contract."""
