"""The committed JSON Schema of every event type, and the rule for changing one.

`shared/contracts/<ce_type>.json` holds each event type's payload schema as last
committed. A change a consumer of the previous version could not read is refused on the
same topic (`breaking_changes`): a field removed or renamed, a type changed (nullability
included), an optional field made required or a required one optional, a new required
field, an enum value removed, a constant changed. Such a change needs a new topic
version (`lintas.cases.v2` in `lintas_shared.topics`). Anything else (a new optional
field, a new enum value, a new event type, descriptions) is additive and updates the
snapshot in the same commit:

    uv run python -m lintas_shared.contracts --write

A new enum value reaches consumers that validate the older enum as an invalid payload
(parked as a dead letter): deploy the consumers before the producer that sends it.
Constraints the models' validators already enforce (patterns, formats, lengths, an enum
given to a field that was a free string) are not compared.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from lintas_shared import events as ev

CONTRACTS_DIR: Final = Path(__file__).resolve().parents[2] / "contracts"
SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
WRITE_COMMAND: Final = "uv run python -m lintas_shared.contracts --write"


def contract(cls: type[ev.EventPayload]) -> dict[str, Any]:
    """The committed form of one event type's payload schema."""
    return {
        "$schema": SCHEMA_DIALECT,
        "x-lintas-event-type": cls.TYPE,
        "x-lintas-topic": cls.TOPIC,
        **cls.model_json_schema(mode="validation"),
    }


def contract_path(directory: Path, event_type: str) -> Path:
    """Where the snapshot of `event_type` lives."""
    return directory / f"{event_type}.json"


def dumps(schema: Mapping[str, Any]) -> str:
    """The committed text of a snapshot."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_contracts(
    directory: Path = CONTRACTS_DIR,
    event_types: Mapping[str, type[ev.EventPayload]] = ev.EVENT_TYPES,
) -> list[Path]:
    """Write every type's snapshot and delete those of types that no longer exist."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for event_type, cls in event_types.items():
        path = contract_path(directory, event_type)
        path.write_text(dumps(contract(cls)), encoding="utf-8")
        written.append(path)
    for path in directory.glob("*.json"):
        if path not in written:
            path.unlink()
    return written


# --- comparison ----------------------------------------------------------------------------


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    seen = 0
    while "$ref" in schema and seen < 50:
        schema = defs[str(schema["$ref"]).rsplit("/", 1)[-1]]
        seen += 1
    return schema


def _variants(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    schema = _resolve(schema, defs)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return [v for sub in schema[key] for v in _variants(sub, defs)]
    kind = schema.get("type")
    if isinstance(kind, list):
        return [{**schema, "type": k} for k in kind]
    return [schema]


def _kind(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    values = [schema["const"]] if "const" in schema else list(schema.get("enum", ()))
    names = {type(v).__name__ for v in values}
    if names:
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
            names.pop() if len(names) == 1 else "", "any"
        )
    return "any"


def _values(schema: Mapping[str, Any]) -> set[str] | None:
    if "const" in schema:
        return {json.dumps(schema["const"])}
    if "enum" in schema:
        return {json.dumps(v) for v in schema["enum"]}
    return None


@dataclass
class _Comparison:
    old_defs: Mapping[str, Any]
    new_defs: Mapping[str, Any]
    problems: list[str] = field(default_factory=list)

    def node(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        olds, news = _variants(old, self.old_defs), _variants(new, self.new_defs)
        old_kinds = sorted({_kind(v) for v in olds})
        new_kinds = sorted({_kind(v) for v in news})
        where = path or "<payload>"
        if old_kinds != new_kinds:
            self.problems.append(
                f"{where}: type changed from {' | '.join(old_kinds)} to {' | '.join(new_kinds)}"
            )
            return
        for kind in old_kinds:
            old_of = [v for v in olds if _kind(v) == kind]
            new_of = [v for v in news if _kind(v) == kind]
            if len(old_of) != len(new_of):
                self.problems.append(f"{where}: the {kind} alternatives changed")
                continue
            for o, n in zip(old_of, new_of, strict=True):
                self.leaf(o, n, path, kind)

    def leaf(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str, kind: str) -> None:
        where = path or "<payload>"
        old_values, new_values = _values(old), _values(new)
        if old_values is not None:
            if new_values is None:
                self.problems.append(f"{where}: no longer limited to {sorted(old_values)}")
            else:
                if old_values - new_values:
                    self.problems.append(
                        f"{where}: value removed: {', '.join(sorted(old_values - new_values))}"
                    )
        if kind == "array":
            self.node(old.get("items", {}), new.get("items", {}), f"{path}[]")
        if kind == "object":
            self.object(old, new, path)

    def object(self, old: Mapping[str, Any], new: Mapping[str, Any], path: str) -> None:
        prefix = f"{path}." if path else ""
        old_props: Mapping[str, Any] = old.get("properties", {})
        new_props: Mapping[str, Any] = new.get("properties", {})
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        for name in old_props:
            if name not in new_props:
                self.problems.append(f"{prefix}{name}: field removed (or renamed)")
        for name in new_props:
            if name not in old_props and name in new_required:
                self.problems.append(f"{prefix}{name}: new field is required")
        for name in old_props:
            if name not in new_props:
                continue
            if name in new_required and name not in old_required:
                self.problems.append(f"{prefix}{name}: optional field made required")
            if name in old_required and name not in new_required:
                self.problems.append(f"{prefix}{name}: required field made optional")
            self.node(old_props[name], new_props[name], f"{prefix}{name}")


def breaking_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What a consumer of `old` could not read in `new`, or a consumer of `new` in records
    written under `old` (both stay on the topic); empty when the change is additive."""
    comparison = _Comparison(old.get("$defs", {}), new.get("$defs", {}))
    comparison.node(old, new, "")
    return comparison.problems


@dataclass(frozen=True)
class ContractReport:
    """The models against the committed snapshots."""

    breaking: list[str]
    stale: list[str]


def check_contracts(
    directory: Path = CONTRACTS_DIR,
    event_types: Mapping[str, type[ev.EventPayload]] = ev.EVENT_TYPES,
) -> ContractReport:
    """Compare every model with its snapshot: breaking changes on the same topic, and
    snapshots that differ (an additive change, a new or a removed type)."""
    breaking: list[str] = []
    stale: list[str] = []
    for event_type, cls in event_types.items():
        path = contract_path(directory, event_type)
        if not path.exists():
            stale.append(f"{event_type}: new event type, no snapshot yet")
            continue
        old = json.loads(path.read_text("utf-8"))
        new = contract(cls)
        if old == new:
            continue
        if old.get("x-lintas-topic") != cls.TOPIC:
            stale.append(f"{event_type}: moved from {old.get('x-lintas-topic')} to {cls.TOPIC}")
            continue
        problems = breaking_changes(old, new)
        if problems:
            breaking += [f"{event_type} on {cls.TOPIC}: {p}" for p in problems]
        else:
            stale.append(f"{event_type}: changed (additively)")
    for path in sorted(directory.glob("*.json")):
        if path.stem not in event_types:
            stale.append(f"{path.stem}: no such event type any more")
    return ContractReport(breaking, stale)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m lintas_shared.contracts --write | --check`."""
    parser = argparse.ArgumentParser(prog="python -m lintas_shared.contracts")
    parser.add_argument("--write", action="store_true", help="rewrite shared/contracts/")
    args = parser.parse_args(argv)
    report = check_contracts()
    for line in report.breaking:
        print(f"breaking: {line}", file=sys.stderr)
    if report.breaking:
        print(
            "A consumer of the previous version could not read these. Make the change "
            "additive, or give the topic a new version in lintas_shared/topics.py.",
            file=sys.stderr,
        )
        return 1
    if args.write:
        for path in write_contracts():
            print(f"wrote {path}", file=sys.stderr)
        return 0
    for line in report.stale:
        print(f"stale: {line}", file=sys.stderr)
    if report.stale:
        print(f"Snapshots are stale: run `{WRITE_COMMAND}`", file=sys.stderr)
    return 1 if report.stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
