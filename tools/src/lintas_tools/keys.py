"""`lintas keys rotate`: move everything the master key wraps or seals to the current one.

Run it after every service runs with the new key as `LINTAS_MASTER_KEY` (a new
`LINTAS_MASTER_KEY_ID`) and the old one in `LINTAS_MASTER_KEYS_PREVIOUS`: services keep
reading both meanwhile, so nothing stops. It re-wraps every case key in the vault and
re-seals every partner's webhook secret; it is safe to run again (what is current is left
alone) and says when the previous keys can be removed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from lintas_referral.adapters.partner_directory import MongoPartnerDirectory, ResealReport
from lintas_referral.adapters.routing_repository import MongoRoutingRepository
from lintas_referral.webhooks import SecretBox
from lintas_shared.crypto import KeyVault, MasterKeys, RotationReport
from lintas_shared.mongo import make_mongo_client


@dataclass(frozen=True)
class KeysTarget:
    """Where the vault and the partners' webhook registrations are."""

    mongodb_uri: str
    keyvault_database: str
    referral_database: str


@dataclass(frozen=True)
class KeyRotation:
    """What a rotation pass did."""

    case_keys: RotationReport
    webhook_secrets: ResealReport

    @property
    def complete(self) -> bool:
        """Nothing is left under a previous key: those can be removed from settings."""
        return (
            not self.case_keys.remaining
            and self.case_keys.unreadable == 0
            and self.webhook_secrets.unreadable == 0
        )

    def summary(self) -> dict[str, object]:
        """The counts, for the operator (no key material)."""
        return {
            "current_key_id": self.case_keys.current_id,
            "case_keys": asdict(self.case_keys),
            "webhook_secrets": asdict(self.webhook_secrets),
            "previous_keys_can_be_removed": self.complete,
        }


async def rotate_keys(
    target: KeysTarget, keys: MasterKeys, say: Callable[[str], None]
) -> KeyRotation:
    """Re-wrap the vault and re-seal webhook secrets under `keys.current_id`."""
    client = make_mongo_client(target.mongodb_uri, app_name="lintas-keys")
    try:
        vault = KeyVault(client[target.keyvault_database]["case_keys"], keys)

        async def progress(report: RotationReport) -> None:
            say(
                f"case keys: {report.checked} checked, {report.rewrapped} re-wrapped, "
                f"{report.erased_meanwhile} erased meanwhile, {report.unreadable} unreadable"
            )

        say(f"re-wrapping case keys under master key id {keys.current_id}")
        case_keys = await vault.rewrap_all(progress)
        database = client[target.referral_database]
        partners = MongoPartnerDirectory(
            database["partners"], MongoRoutingRepository(database["routings"])
        )
        say("re-sealing webhook secrets")
        webhook_secrets = await partners.reseal_webhook_secrets(SecretBox(keys))
        return KeyRotation(case_keys, webhook_secrets)
    finally:
        await client.close()
