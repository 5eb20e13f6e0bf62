"""Which fields of a case are personal, and sealing them with the case's key.

The same field names label the sealed values in intake's store and in events, so a
token can be opened wherever the case key is available, and nowhere after erasure.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from lintas_shared.crypto import PREFIX, DataKey

#: Personal fields of the submission, as (section, field) pairs.
#: `worker.functioning` (the Washington Group answers, an object) is sealed as its JSON.
#: `worker.gender` and `consent.taken_by` were stored in clear before issue #15: such
#: values are still read (`open_value`) and sealed at the case's next write.
PERSONAL_FIELDS: Final = (
    ("worker", "full_name"),
    ("worker", "phone"),
    ("worker", "date_of_birth"),
    ("worker", "gender"),
    ("consent", "taken_by"),
    ("worker", "home_region"),
    ("worker", "passport_number"),
    ("worker", "functioning"),
    ("employment", "employer_name"),
    ("employment", "placement_agency"),
)


def _transform(submission: dict[str, Any], change: Any) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in submission.items()}
    for section, name in PERSONAL_FIELDS:
        part = out.get(section)
        if isinstance(part, dict) and part.get(name) is not None:
            part[name] = change(f"{section}.{name}", part[name])
    claims = []
    for i, claim in enumerate(out.get("claims", [])):
        claim = dict(claim)
        if claim.get("description") is not None:
            claim["description"] = change(f"claims[{i}].description", claim["description"])
        claims.append(claim)
    out["claims"] = claims
    return out


#: Personal fields whose value is an object, sealed as one JSON string.
_OBJECT_FIELDS: Final = frozenset({"worker.functioning"})


def _seal(key: DataKey) -> Callable[[str, Any], str]:
    def seal(field: str, value: Any) -> str:
        text = json.dumps(value, sort_keys=True) if field in _OBJECT_FIELDS else value
        return key.encrypt(field, text)

    return seal


def _open(key: DataKey) -> Callable[[str, str], Any]:
    def open_(field: str, token: str) -> Any:
        text = open_value(key, field, token)
        return json.loads(text) if field in _OBJECT_FIELDS else text

    return open_


def open_value(key: DataKey, field: str, value: str) -> str:
    """A sealed field's value; one stored before the field was sealed is returned as is."""
    return key.decrypt(field, value) if value.startswith(PREFIX) else value


def seal_submission(submission: dict[str, Any], key: DataKey) -> dict[str, Any]:
    """The submission (JSON form) with every personal field encrypted."""
    return _transform(submission, _seal(key))


def open_submission(sealed: dict[str, Any], key: DataKey) -> dict[str, Any]:
    """The submission (JSON form) with every personal field decrypted."""
    return _transform(sealed, _open(key))
