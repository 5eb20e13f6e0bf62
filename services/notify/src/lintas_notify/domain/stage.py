"""A case's stage as the worker should hear it, kept from the events notify consumes."""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """Where a case stands, in the terms a STATUS reply uses (words in templates' [words])."""

    RECEIVED = "received"
    OFFERED = "offered"
    WITH_LAWYER = "with_lawyer"
    DOCUMENTS_NEEDED = "documents_needed"
    FILED = "filed"
    CLOSED = "closed"
