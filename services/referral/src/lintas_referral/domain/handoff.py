"""The minimised handoff: which fields a purpose shares, and the partner's view of them.

Manifests are data (`data/manifests.toml`). `minimised_view` builds the partner's view
holding exactly the manifest's fields, decrypting personal fields through a callback so
this module stays pure.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any

from lintas_shared.crypto import DataKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: A field path: 'worker.full_name' or 'claims[].description'.
_PATH = re.compile(r"^(worker|employment)\.[a-z_]+$|^claims\[\]\.[a-z_]+$")
#: The field name the sealed content of a referral is bound to (AES-GCM associated data).
CONTENT_FIELD = "referral.content"
#: Called with the field name as sealed (e.g. 'claims[0].description') and the token.
Decrypt = Callable[[str, str], str]


class ManifestError(ValueError):
    """The manifests file is broken; the message names the purpose and field."""


class Manifest(BaseModel):
    """What a handoff for one purpose shares, and on which legal basis."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    purpose: str
    legal_basis: str = Field(min_length=1)
    fields: tuple[str, ...] = Field(min_length=1)


def parse_manifests(text: str) -> dict[str, Manifest]:
    """Parse and validate the manifests file."""
    raw = tomllib.loads(text)
    result = {}
    for purpose, body in raw.items():
        try:
            manifest = Manifest.model_validate({"purpose": purpose, **body})
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(map(str, err["loc"]))
            raise ManifestError(f"[{purpose}], field '{field}': {err['msg']}") from None
        for path in manifest.fields:
            if not _PATH.match(path):
                raise ManifestError(f"[{purpose}], field 'fields': bad path {path!r}")
        result[purpose] = manifest
    return result


def load_default_manifests() -> dict[str, Manifest]:
    """The manifests shipped with the service."""
    text = resources.files("lintas_referral.data").joinpath("manifests.toml").read_text("utf-8")
    return parse_manifests(text)


def _is_token(value: object) -> bool:
    return isinstance(value, str) and value.startswith("enc:v1:")


def minimised_view(
    case: Mapping[str, Any],
    fields: Sequence[str],
    claim_indexes: Sequence[int],
    decrypt: Decrypt,
) -> dict[str, Any]:
    """The case as the partner sees it: exactly `fields`, for the claims handed over."""
    view: dict[str, Any] = {}
    claims: list[dict[str, Any]] = [{} for _ in claim_indexes]
    for path in fields:
        section, name = path.split(".", 1)
        if section == "claims[]":
            for out, index in zip(claims, claim_indexes, strict=True):
                value = case["claims"][index].get(name)
                out[name] = decrypt(f"claims[{index}].{name}", value) if _is_token(value) else value
            continue
        value = case.get(section, {}).get(name)
        view.setdefault(section, {})[name] = (
            decrypt(f"{section}.{name}", value) if _is_token(value) else value
        )
    if any(p.startswith("claims[]") for p in fields):
        view["claims"] = claims
    return view


def flatten_fields(view: Mapping[str, Any]) -> set[str]:
    """The field paths a view holds, in manifest notation (used to check a view)."""
    paths = set()
    for section, body in view.items():
        if section == "claims":
            paths |= {f"claims[].{name}" for claim in body for name in claim}
        else:
            paths |= {f"{section}.{name}" for name in body}
    return paths


def referral_key(case_key: DataKey, referral_id: str) -> DataKey:
    """The key that seals one referral's content for its partner.

    Derived from the case's own key, so erasing the case (destroying its key) makes the
    content in every Kafka record unreadable too; and one per referral, so a partner's
    key opens nothing offered to anyone else.
    """
    derived = hmac.new(case_key.key, f"referral:{referral_id}".encode(), hashlib.sha256)
    return DataKey(case_key.case_id, derived.digest())


def seal_content(key: DataKey, view: Mapping[str, Any]) -> str:
    """The partner's view as one sealed token (JSON inside)."""
    return key.encrypt(CONTENT_FIELD, json.dumps(view, sort_keys=True, separators=(",", ":")))
