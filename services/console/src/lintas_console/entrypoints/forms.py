"""HTML forms to API bodies and back: field names are the API's own paths
(`worker.phone`, `claims[0].amount.value`), so each error the API names lands beside
the field it names."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lintas_console.adapters.services_api import FieldProblem

#: Fields of the form itself, never part of the API's body.
FORM_ONLY = frozenset({"csrf_token", "action", "idempotency_key", "claim_count"})
_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _parts(name: str) -> list[str | int]:
    return [key if key else int(index) for key, index in _PART.findall(name)]


def nest(pairs: Iterable[tuple[str, str]], lists: frozenset[str] = frozenset()) -> dict[str, Any]:
    """`[("worker.phone", "+62…"), ("claims[0].type", "unpaid_wages")]` to the nested
    body. Empty values are left out (the API decides what is required); names in `lists`
    collect every value (checkboxes)."""
    body: dict[str, Any] = {}
    for name, raw in pairs:
        value = raw.strip()
        if not value or name.startswith("_") or name in FORM_ONLY:
            continue
        parts = _parts(name)
        node: Any = body
        for here, following in zip(parts, [*parts[1:], None], strict=True):
            if following is None:
                if name in lists:
                    node.setdefault(here, []).append(value)
                else:
                    node[here] = value
                break
            default: Any = [] if isinstance(following, int) else {}
            if isinstance(here, int):
                while len(node) <= here:
                    node.append(None)
                if node[here] is None:
                    node[here] = default
                node = node[here]
            else:
                node = node.setdefault(here, default)
    nested: dict[str, Any] = _compact(body)
    return nested


def _compact(value: Any) -> Any:
    """Drop the holes a skipped index leaves in a list."""
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_compact(v) for v in value if v is not None]
    return value


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """The inverse of `nest`, to fill a form again from what was posted."""
    out: dict[str, str] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            out |= flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value and not all(isinstance(v, str) for v in value):
        for index, item in enumerate(value):
            out |= flatten(item, f"{prefix}[{index}]")
    elif isinstance(value, list):
        out[prefix] = ",".join(value)
    elif value is not None:
        out[prefix] = str(value)
    return out


def aware(local: str, zone: str) -> str | None:
    """A `datetime-local` value read in `zone`, as the API's ISO 8601 with offset."""
    try:
        moment = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone))
    except (ValueError, ZoneInfoNotFoundError):
        return None
    return moment.isoformat()


def field_messages(
    problems: Iterable[FieldProblem], translate: Callable[[str], str]
) -> dict[str, str]:
    """One message per field path, in the person's language."""
    messages: dict[str, str] = {}
    for problem in problems:
        messages.setdefault(problem.field, explain(problem, translate))
    return messages


def explain(problem: FieldProblem, _: Callable[[str], str]) -> str:
    """The API's field error as a person reads it (the API's English is its fallback)."""
    text = problem.message.lower()
    field = problem.field
    if problem.type == "missing" or problem.type == "string_too_short":
        return _("This field is required.")
    if field.endswith("phone"):
        return _("Not a valid phone number. Write it with the country code, e.g. +6281234567890.")
    if "future" in text:
        return _("This date is in the future.")
    if "before started_on" in text:
        return _("The end of the employment is before its start.")
    if "outside the employment" in text:
        return _("This date is more than a year outside the employment.")
    if problem.type.startswith(("date", "datetime")) or "date" in problem.type:
        return _("Not a valid date.")
    if problem.type in ("enum", "literal_error"):
        return _("Choose one of the options.")
    if field.endswith("amount.value") or "decimal" in text or "amount" in text:
        return _("Not a valid amount. Write it like 12000.00.")
    if "country" in field or "currency" in field or "language" in field:
        return _("Choose one of the options.")
    if problem.type == "string_too_long":
        return _("This is too long.")
    if problem.type == "too_short":
        return _("Add at least one.")
    return _("This value is not valid.") + f" ({problem.message})"
