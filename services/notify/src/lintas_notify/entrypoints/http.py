"""The provider-facing API: inbound SMS and delivery receipts, authenticated by token.

Both accept JSON (`{"from", "body", "id"}`; `{"message_id", "status", "reason"}`) or a
Twilio-shaped form post (`From`, `Body`, `MessageSid`; `MessageSid`, `MessageStatus`,
`ErrorCode`), and refuse any other content type (415). The token travels in
`X-Lintas-Provider-Token`. Both bodies are described in the OpenAPI document, in both
content types, as the handlers read them (the handlers read the raw body).
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any, Final, TypeVar
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Header, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from lintas_shared.http import Problem
from lintas_shared.http_auth import authenticated
from lintas_shared.values import PHONE_PATTERN, PhoneNumber
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from lintas_notify.ports import ProviderUnavailableError
from lintas_notify.replies import Conversations

PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or wrong X-Lintas-Provider-Token"},
    415: {"model": Problem, "description": "Neither JSON nor a form post"},
    422: {"model": Problem, "description": "Invalid fields, each named"},
}
FORM: Final = "application/x-www-form-urlencoded"
_PHONE: TypeAdapter[str] = TypeAdapter(PhoneNumber)
M = TypeVar("M", bound=BaseModel)


class InboundSms(BaseModel):
    """An SMS a worker sent to the Lintas number."""

    sender: str = Field(
        alias="from",
        description="E.164 phone of the sender",
        json_schema_extra={"pattern": PHONE_PATTERN},
    )
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
    authenticated(request)


# async: FastAPI runs a plain function dependency in a worker thread, each request.
async def _conversations(request: Request) -> Conversations:
    conversations: Conversations = request.app.state.conversations
    return conversations


Authenticated = Annotated[None, Depends(_authenticated)]
Talk = Annotated[Conversations, Depends(_conversations)]

router = APIRouter(prefix="/v1", tags=["sms provider"], responses=PROBLEMS)


def _request_body(
    model: type[BaseModel], form: dict[str, Any], example: dict[str, str]
) -> dict[str, Any]:
    """The OpenAPI `requestBody` of a handler that reads the raw body: JSON as the model
    says, or the provider's form fields."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": model.model_json_schema(by_alias=True),
                    "examples": {"json": {"summary": "JSON", "value": example}},
                },
                FORM: {"schema": form},
            },
        }
    }


INBOUND_FORM: Final = {
    "type": "object",
    "properties": {
        "From": {"type": "string", "pattern": PHONE_PATTERN},
        "Body": {"type": "string", "maxLength": 1600},
        "MessageSid": {"type": "string", "maxLength": 200},
    },
    "required": ["From", "Body"],
}
RECEIPT_FORM: Final = {
    "type": "object",
    "properties": {
        "MessageSid": {"type": "string", "maxLength": 200},
        "MessageStatus": {"type": "string", "maxLength": 40},
        "ErrorCode": {"type": "string", "maxLength": 500},
    },
    "required": ["MessageSid", "MessageStatus"],
}


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _fields(request: Request, form_names: dict[str, str]) -> dict[str, Any]:
    """The body as a dict, from JSON or from a form with provider field names mapped."""
    media_type = _media_type(request)
    if media_type == FORM:
        # Parsed by hand: Starlette's form parser needs python-multipart for one format.
        form = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
        return {ours: form[theirs][0] for theirs, ours in form_names.items() if theirs in form}
    if media_type != "application/json":
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"Send application/json or {FORM}."
        )
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
    openapi_extra=_request_body(
        InboundSms, INBOUND_FORM, {"from": "+6281234567890", "body": "STATUS LB-7K3Q9"}
    ),
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


@router.post(
    "/delivery-receipts",
    response_model=ReceiptAnswer,
    summary="A delivery report",
    openapi_extra=_request_body(
        DeliveryReceipt, RECEIPT_FORM, {"message_id": "SM123", "status": "delivered"}
    ),
)
async def delivery_receipt(request: Request, _auth: Authenticated, talk: Talk) -> ReceiptAnswer:
    """Record delivered/failed (and the provider's reason) on the message it concerns."""
    data = await _fields(
        request, {"MessageSid": "message_id", "MessageStatus": "status", "ErrorCode": "reason"}
    )
    receipt = _validate(DeliveryReceipt, data)
    matched = await talk.receipt(receipt.message_id, receipt.status, receipt.reason)
    return ReceiptAnswer(matched=matched)
