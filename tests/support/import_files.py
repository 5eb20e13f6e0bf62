"""Generated bulk-import files: valid rows with a known share of broken ones."""

from __future__ import annotations

import csv
from pathlib import Path

from lintas_tools.importer import CSV_COLUMNS, EXAMPLE_ROW

GOOD_ROW = {k: v for k, v in EXAMPLE_ROW.items() if k != "external_ref"}
#: Ways a row goes wrong, and the field the API must name for it.
BREAKAGES = (
    ("worker_phone", "0812-3456", "worker.phone"),
    ("claim_amount_value", "12,000", "claims[0].amount.value"),
    ("employment_country", "XX", "employment.country"),
)


def write_import_csv(
    path: Path, rows: int, bad_every: int, prefix: str, **overrides: str
) -> dict[int, str]:
    """Write `rows` rows, every `bad_every`-th broken; returns {broken row: field to name}."""
    bad: dict[int, str] = {}
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for n in range(rows):
            row = {**GOOD_ROW, **overrides, "external_ref": f"{prefix}-{n:06d}"}
            if n % bad_every == bad_every - 1:
                column, value, field = BREAKAGES[(n // bad_every) % len(BREAKAGES)]
                row[column] = value
                bad[n + 2] = field  # spreadsheet numbering: row 1 is the header
            writer.writerow(row)
    return bad
