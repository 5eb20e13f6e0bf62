"""Generated import files: valid rows with a known share of broken ones.

Used by the import tests and by `make bench` (the 10,000- and 100,000-row runs), so both
break rows the same way and check the same fields are named. The workers are made up;
their names and phones are never printed.
"""

from __future__ import annotations

import csv
from pathlib import Path

from lintas_shared.case_rows import CSV_COLUMNS, EXAMPLE_ROW

GOOD_ROW = {k: v for k, v in EXAMPLE_ROW.items() if k != "external_ref"}

#: Ways a row goes wrong: (column, bad value, the field the API must name for it).
BREAKAGES = (
    ("worker_phone", "0812-3456", "worker.phone"),
    ("claim_amount_value", "12,000", "claims[0].amount.value"),
    ("employment_country", "XX", "employment.country"),
)


def write_import_csv(
    path: Path,
    rows: int,
    bad_every: int,
    prefix: str,
    *,
    distinct_workers: bool = False,
    **overrides: str,
) -> dict[int, str]:
    """Write `rows` rows with external_ref `{prefix}-{n}`, every `bad_every`-th broken
    (0: none); `distinct_workers` gives each row its own made-up name and phone.

    Returns {broken row number as a spreadsheet shows it: the field the API must name}.
    """
    bad: dict[int, str] = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for n in range(rows):
            row = {**GOOD_ROW, **overrides, "external_ref": f"{prefix}-{n:07d}"}
            if distinct_workers:
                row["worker_full_name"] = f"Pekerja Impor {n:07d}"
                row["worker_phone"] = f"+62813{n % 10**8:08d}"
            if bad_every and n % bad_every == bad_every - 1:
                column, value, field = BREAKAGES[(n // bad_every) % len(BREAKAGES)]
                row[column] = value
                bad[n + 2] = field  # row 1 is the header
            writer.writerow(row)
    return bad
