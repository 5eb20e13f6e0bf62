"""Notify's look-up hash of a worker's phone: how an inbound SMS finds her cases.

Only notify holds its key (`LINTAS_PHONE_HASH_KEY`); no event carries this hash (a
`case submitted` event's `phone_hash` is keyed by the case's own key, and notify does
not use it). Notify computes it from the phone it decrypts with the case key, keeps it
only on the live case's profile, its messages and the per-phone records (opt-out, daily
limit), and drops it at erasure: from the erased case at once, and from the per-phone
records with the phone's last case (see `NotifyHandlers.on_case_erased`).
"""

from __future__ import annotations

from dataclasses import dataclass

from lintas_shared.crypto import phone_lookup_hash

from lintas_notify.ports import CaseKeyReader

#: The field name the phone is sealed under (intake's).
PHONE_FIELD = "worker.phone"


@dataclass(frozen=True)
class PhoneLookup:
    """Computes notify's look-up hash of a phone, from the phone or its sealed form."""

    keys: CaseKeyReader
    secret: str

    def of(self, phone: str) -> str:
        """The look-up hash of an E.164 phone."""
        return phone_lookup_hash(phone, self.secret)

    async def of_sealed(self, case_id: str, sealed_phone: str) -> str:
        """The look-up hash of a case's sealed phone; raises CaseKeyMissingError once the
        case is erased."""
        key = await self.keys.get(case_id)
        return self.of(key.decrypt(PHONE_FIELD, sealed_phone))

    def forget(self, case_id: str) -> None:
        """The case was erased: its key is kept nowhere here either."""
        self.keys.forget(case_id)

    async def reveal(self, case_id: str, sealed_phone: str) -> tuple[str, str]:
        """The phone and its look-up hash, from one read of the case key (the phone is
        kept in memory only, for the SMS sent at once); raises CaseKeyMissingError."""
        key = await self.keys.get(case_id)
        phone = key.decrypt(PHONE_FIELD, sealed_phone)
        return phone, self.of(phone)
