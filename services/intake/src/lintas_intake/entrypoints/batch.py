"""`POST /v1/cases/batch`: many cases in one request, for partner systems and imports.

Each case is decided on its own, exactly as `POST /v1/cases` would with its own
Idempotency-Key: created, already present (the same key and body came before), refused
with its field errors (nothing stored for it), or in conflict (its external_ref or its
key is taken by another case). One refused case never holds back the others, and a batch
sent again creates nothing twice. The whole batch costs a few store commands, not a few
per case: one `$in` read for the cases earlier requests made, one unordered insert of the
new ones, and another round only for those refused (a reference drawn twice). Only the
envelope (a list of 1 to MAX_BATCH items, each with a key) is checked as a whole: if it
is wrong, the answer is 422 and nothing is stored.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, Response
from lintas_shared.http import Problem, problem_response, validation_errors
from lintas_shared.problems import FieldError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lintas_intake.domain.organisation import OrganisationKind
from lintas_intake.domain.submission import CaseSubmission
from lintas_intake.entrypoints.examples import EXAMPLE_SUBMISSION
from lintas_intake.entrypoints.http import PROBLEMS, Caller, Service
from lintas_intake.handlers import (
    DuplicateExternalRefError,
    IdempotencyConflictError,
    NewSubmission,
    Submitted,
    request_hash,
)

#: Most cases in one batch (a typical case is 1-2 KB: 100 of them stay well inside the
#: request body limit, LINTAS_HTTP_MAX_BODY_BYTES).
MAX_BATCH: Final = 200


class BatchCase(BaseModel):
    """One case of a batch, with its own idempotency key."""

    model_config = ConfigDict(extra="forbid")

    idempotency_key: str = Field(
        min_length=1,
        max_length=200,
        description="As the Idempotency-Key header of POST /v1/cases: the same key and "
        "case return the first answer and create nothing new",
    )
    case: dict[str, Any] = Field(
        description="The case, as the body of POST /v1/cases (schema CaseSubmission); "
        "checked on its own, so an invalid case is refused in its result, not here"
    )


class CaseBatch(BaseModel):
    """Cases to submit together."""

    model_config = ConfigDict(extra="forbid")

    cases: list[BatchCase] = Field(min_length=1, max_length=MAX_BATCH)


class BatchOutcome(StrEnum):
    """What became of one case of a batch."""

    CREATED = "created"
    ALREADY_PRESENT = "already_present"
    REFUSED = "refused"
    CONFLICT = "conflict"


class BatchResult(BaseModel):
    """The answer for one case, at the position it had in the request."""

    index: int
    idempotency_key: str
    outcome: BatchOutcome
    id: str | None = None
    reference: str | None = None
    external_ref: str | None = None
    errors: list[FieldError] | None = Field(
        default=None, description="`refused`: each invalid field, named within the case"
    )
    detail: str | None = Field(default=None, description="`conflict`: why")
    existing_case_id: str | None = Field(
        default=None, description="`conflict` on external_ref: the case that has it"
    )


class BatchAnswer(BaseModel):
    """One result per case, in request order, and how many of each outcome."""

    results: list[BatchResult]
    created: int
    already_present: int
    refused: int
    conflict: int


router = APIRouter(prefix="/v1", tags=["cases"], responses=PROBLEMS)


@router.post(
    "/cases/batch",
    response_model=BatchAnswer,
    summary=f"Submit up to {MAX_BATCH} cases at once, each with its own result",
    responses={
        403: {"model": Problem, "description": "Only NGOs submit cases"},
        413: {"model": Problem, "description": "Body too large"},
        422: {"model": Problem, "description": "The batch itself is malformed; nothing stored"},
    },
)
async def submit_batch(
    caller: Caller,
    service: Service,
    batch: Annotated[
        CaseBatch,
        Body(
            openapi_examples={
                "two_cases": {
                    "summary": "Two cases, each with its key",
                    "value": {
                        "cases": [
                            {"idempotency_key": "crm-4411", "case": EXAMPLE_SUBMISSION},
                            {
                                "idempotency_key": "crm-4412",
                                "case": {**EXAMPLE_SUBMISSION, "external_ref": "crm-4412"},
                            },
                        ]
                    },
                }
            }
        ),
    ],
) -> BatchAnswer | Response:
    """Decide every case as POST /v1/cases would: one read finds what earlier requests
    created, and the new cases are inserted together."""
    if caller.organisation.kind is not OrganisationKind.NGO:
        return problem_response(403, "Forbidden", "Only NGO organisations submit cases.")
    results: dict[int, BatchResult] = {}
    valid: list[tuple[int, NewSubmission]] = []
    for index, item in enumerate(batch.cases):
        try:
            submission = CaseSubmission.model_validate(item.case)
        except ValidationError as exc:
            errors = validation_errors(exc.errors(include_input=False))
            results[index] = BatchResult(
                index=index,
                idempotency_key=item.idempotency_key,
                outcome=BatchOutcome.REFUSED,
                errors=errors,
            )
            continue
        valid.append(
            (index, NewSubmission(submission, item.idempotency_key, request_hash(item.case)))
        )
    decided = await service.submit_many(
        [new for _, new in valid], caller.organisation.id, person_id=caller.person_id
    )
    for (index, new), outcome in zip(valid, decided, strict=True):
        results[index] = _result(index, new.idempotency_key, outcome)
    ordered = [results[index] for index in range(len(batch.cases))]
    counts = dict.fromkeys(BatchOutcome, 0)
    for result in ordered:
        counts[result.outcome] += 1
    return BatchAnswer(
        results=ordered,
        created=counts[BatchOutcome.CREATED],
        already_present=counts[BatchOutcome.ALREADY_PRESENT],
        refused=counts[BatchOutcome.REFUSED],
        conflict=counts[BatchOutcome.CONFLICT],
    )


def _result(index: int, idempotency_key: str, outcome: Submitted | Exception) -> BatchResult:
    answer: dict[str, Any] = {"index": index, "idempotency_key": idempotency_key}
    if isinstance(outcome, DuplicateExternalRefError):
        return BatchResult(
            **answer,
            outcome=BatchOutcome.CONFLICT,
            detail=str(outcome),
            existing_case_id=outcome.existing_case_id,
        )
    if isinstance(outcome, IdempotencyConflictError):
        return BatchResult(**answer, outcome=BatchOutcome.CONFLICT, detail=str(outcome))
    if isinstance(outcome, Exception):
        raise outcome
    return BatchResult(
        **answer,
        outcome=BatchOutcome.CREATED if outcome.created else BatchOutcome.ALREADY_PRESENT,
        id=outcome.id,
        reference=outcome.reference,
        external_ref=outcome.external_ref,
    )
