"""The provider-facing API: inbound SMS and delivery receipts, authenticated by token.

Both accept JSON (`{"from", "body", "id"}`; `{"message_id", "status", "reason"}`) or a
Twilio-shaped form post (`From`, `Body`, `MessageSid`; `MessageSid`, `MessageStatus`,
`ErrorCode`). The token travels in `X-Lintas-Provider-Token`.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Header, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from lintas_shared.http import Problem
from lintas_shared.values import PhoneNumber
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from lintas_notify.ports import ProviderUnavailableError
from lintas_notify.replies import Conversations

PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or wrong X-Lintas-Provider-Token"},
    422: {"model": Problem, "description": "Invalid fields, each named"},
}
_PHONE: TypeAdapter[str] = TypeAdapter(PhoneNumber)
M = TypeVar("M", bound=BaseModel)


class InboundSms(BaseModel):
    """An SMS a worker sent to the Lintas number."""

    sender: str = Field(alias="from", description="E.164 phone of the sender")
    body: str = Field(max_length=1600)
    id: str | None = Field(default=None, max_length=200, description="The provider's id")


class DeliveryReceipt(BaseModel):
    """The provider's report on a message it accepted."""

    message_id: str = Field(max_length=200, description="The provider's message id")
    status: str = Field(max_length=40)
    reason: str | None = Field(default=None, max_length=500)


class InboundAnswer(BaseModel):
    """What notify did (never a word about any case)."""

    intent: str
    replied: bool


class ReceiptAnswer(BaseModel):
    """Whether the receipt matched a message."""

    matched: bool


async def _authenticated(
    request: Request,
    x_lintas_provider_token: Annotated[
        str | None, Header(description="The provider's shared token")
    ] = None,
) -> None:
    expected: str = request.app.state.inbound_token
    given = x_lintas_provider_token or ""
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "A valid X-Lintas-Provider-Token header is required.",
            headers={"WWW-Authenticate": "Token"},
        )


def _conversations(request: Request) -> Conversations:
    conversations: Conversations = request.app.state.conversations
    return conversations


Authenticated = Annotated[None, Depends(_authenticated)]
Talk = Annotated[Conversations, Depends(_conversations)]

router = APIRouter(prefix="/v1", tags=["sms provider"], responses=PROBLEMS)


async def _fields(request: Request, form_names: dict[str, str]) -> dict[str, Any]:
    """The body as a dict, from JSON or from a form with provider field names mapped."""
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        # Parsed by hand: Starlette's form parser needs python-multipart for one format.
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        return {ours: form[theirs][0] for theirs, ours in form_names.items() if theirs in form}
    try:
        data = await request.json()
    except ValueError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "Body is not JSON.") from None
    if not isinstance(data, dict):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "Body is not a JSON object.")
    return data


def _validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_input=False)]
        ) from None


@router.post(
    "/inbound-sms",
    response_model=InboundAnswer,
    summary="An SMS from a worker (STOP/BERHENTI, START/MULAI, STATUS <reference>)",
    responses={503: {"model": Problem, "description": "The reply could not be sent yet"}},
)
async def inbound_sms(request: Request, _auth: Authenticated, talk: Talk) -> InboundAnswer:
    """Opt out, opt back in, or answer a STATUS request; each answered at most once."""
    data = await _fields(request, {"From": "from", "Body": "body", "MessageSid": "id"})
    sms = _validate(InboundSms, data)
    try:
        sender = _PHONE.validate_python(sms.sender)
    except ValidationError:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY, "'from' must be an E.164 phone number."
        ) from None
    try:
        outcome = await talk.inbound(sender, sms.body, sms.id)
    except ProviderUnavailableError:
        # The gateway retries the webhook; the reply is keyed by its id and goes once.
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "Reply not sent yet; retry later."
        ) from None
    return InboundAnswer(intent=outcome.intent.value, replied=outcome.replied_with is not None)


@router.post("/delivery-receipts", response_model=ReceiptAnswer, summary="A delivery report")
async def delivery_receipt(request: Request, _auth: Authenticated, talk: Talk) -> ReceiptAnswer:
    """Record delivered/failed (and the provider's reason) on the message it concerns."""
    data = await _fields(
        request, {"MessageSid": "message_id", "MessageStatus": "status", "ErrorCode": "reason"}
    )
    receipt = _validate(DeliveryReceipt, data)
    matched = await talk.receipt(receipt.message_id, receipt.status, receipt.reason)
    return ReceiptAnswer(matched=matched)
