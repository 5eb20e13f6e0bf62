"""A partner's load: the open referrals counted on a partner (its count `open` and, one
document each in `partner_claims`, the claims), and the reconciler that keeps that count
true to the routings.

Each open referral is counted once, keyed by its referral id, with the case, the claim's
owners (the use-case runs that claimed it: usually one) and when it was last claimed. The
routing documents stay the truth (`open_partner_ids` and the referrals' statuses); the
count runs ahead of them by design (room is claimed before the routing's write), and may
be left wrong by an instance that died between a claim and its write, between a write and
its release, or between the two steps of a claim or a release (the claim document and the
count). `LoadReconciler` puts it right, at start-up and then every
`LINTAS_REFERRAL_LOAD_RECONCILE_INTERVAL_SECONDS`, never per case:

- a referral the routings hold open but the partner does not count is counted;
- a counted referral no routing holds open is dropped once its claim is older than the
  grace period (`LINTAS_REFERRAL_LOAD_CLAIM_GRACE_SECONDS`): a younger one may belong
  to a write still on its way;
- the count is set to the number of claims kept;
- the partner's document is read before its claims and the routings, and its count is
  replaced only if its own version (`load_seq`, bumped by every claim and release) has
  not moved, so a claim or release made meanwhile is never undone (the next pass looks
  again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from lintas_shared.background import BackgroundTask
from lintas_shared.logging import get_logger

log = get_logger(__name__)
#: The owner of a count the reconciler added (no use case claimed it).
RECONCILER = "reconciler"
#: Partners reconciled per read of the routings.
BATCH = 100
#: How old a claim no routing holds must be before it is dropped (the setting's default).
DEFAULT_GRACE = timedelta(minutes=5)


@dataclass(frozen=True)
class LoadClaim:
    """One open referral counted in a partner's load."""

    case_id: str
    referral_id: str
    #: The use-case run that claimed it: a run's own release undoes only its own claim.
    owner: str
    at: datetime
    #: Other runs that claimed the same referral too (each deciding the same offer): it
    #: stays counted until the last of them lets it go, or it is closed.
    others: tuple[str, ...] = ()

    @property
    def owners(self) -> list[str]:
        """Every run holding the claim."""
        return [self.owner, *self.others] if self.owner else list(self.others)


@dataclass(frozen=True)
class StoredLoad:
    """A partner's load as the store holds it: its count and its claims."""

    partner_id: str
    #: The document's own load version; None when nothing was ever claimed on it.
    seq: int | None
    #: The stored count; None when the partner was stored before it counted its load.
    count: int | None
    claims: Mapping[str, LoadClaim] = field(default_factory=dict)
    #: Counted the way of an earlier version (by case, `open_cases`, or in the partner's
    #: document, `open_referrals`): to be replaced.
    legacy: bool = False
    #: The claims among `claims` still kept in the partner's document by an earlier
    #: version (moved to claim documents when the load is replaced).
    in_document: frozenset[str] = frozenset()


class PartnerLoads(Protocol):
    """The partners' stored loads, read and replaced as a whole (the reconciler's side)."""

    async def partner_ids(self) -> list[str]:
        """Every partner stored."""
        ...

    async def loads(self, partner_ids: Sequence[str]) -> list[StoredLoad]:
        """The stored load of each partner."""
        ...

    async def replace_load(self, load: StoredLoad, claims: Mapping[str, LoadClaim]) -> bool:
        """Store `claims` as the partner's load (and their number as its count) if its
        load version is still `load.seq`; False if it moved (or the partner is gone)."""
        ...


class OpenReferrals(Protocol):
    """The routings' side: which referrals are open with each partner."""

    async def open_referrals_by_partner(
        self, partner_ids: Iterable[str]
    ) -> dict[str, dict[str, str]]:
        """For each partner, its open referrals (referral id -> case id)."""
        ...


def reconciled(
    load: StoredLoad, held: Mapping[str, str], now: datetime, grace: timedelta
) -> dict[str, LoadClaim] | None:
    """The claims a partner's load should hold, or None when it holds them already.

    `held`: the referrals the routings hold open with the partner (id -> case)."""
    wanted = {
        rid: claim for rid, claim in load.claims.items() if rid in held or claim.at > now - grace
    }
    for rid, case_id in held.items():
        if rid not in wanted:
            wanted[rid] = LoadClaim(case_id, rid, RECONCILER, now)
    if wanted.keys() == load.claims.keys() and load.count == len(wanted) and not load.legacy:
        return None
    return wanted


@dataclass
class LoadReconciler:
    """Recounts every partner's load from the routings (see the module's docstring)."""

    partners: PartnerLoads
    routings: OpenReferrals
    clock: Callable[[], datetime]
    grace: timedelta = DEFAULT_GRACE

    async def run_once(self) -> int:
        """One pass over every partner; returns how many loads were corrected."""
        corrected = 0
        ids = await self.partners.partner_ids()
        for start in range(0, len(ids), BATCH):
            batch = ids[start : start + BATCH]
            # The partners first: a claim or release after this read moves `seq`, so
            # what the routings say next can never undo it.
            loads = await self.partners.loads(batch)
            held = await self.routings.open_referrals_by_partner(batch)
            now = self.clock()
            for load in loads:
                wanted = reconciled(load, held.get(load.partner_id, {}), now, self.grace)
                if wanted is None:
                    continue
                if await self.partners.replace_load(load, wanted):
                    corrected += 1
                    log.info(
                        "partner load corrected",
                        partner_id=load.partner_id,
                        was=load.count,
                        now=len(wanted),
                    )
        return corrected


class ReconcilerLoop:
    """Runs the reconciler every `interval` seconds (after the start-up pass)."""

    def __init__(self, reconciler: LoadReconciler, interval: float) -> None:
        self._reconciler = reconciler
        self._interval = interval
        self._loop = BackgroundTask("referral-load-reconciler", self._run)

    async def run_once(self) -> int:
        """One pass; a failure (the store away) is logged and the next pass tries again."""
        try:
            return await self._reconciler.run_once()
        except Exception as exc:
            log.warning("partner load reconciliation failed", error=type(exc).__name__)
            return 0

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.run_once()

    def start(self) -> None:
        """Start the periodic passes in the background."""
        self._loop.start()

    async def stop(self) -> None:
        """Stop them (a pass in flight is cancelled: each replacement is one write)."""
        await self._loop.stop()
