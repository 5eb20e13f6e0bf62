"""`lintas keys rotate` on the real store: every case key re-wrapped and every webhook
secret re-sealed under the current master key, progress and counts printed, and a second
run finds nothing to do."""

from __future__ import annotations

import asyncio
import json

import pytest
from lintas_referral.adapters.partner_directory import MongoPartnerDirectory
from lintas_referral.adapters.routing_repository import MongoRoutingRepository
from lintas_referral.webhooks import SecretBox
from lintas_shared.crypto import KeyVault, MasterKeys
from lintas_shared.mongo import Document
from lintas_tools.cli import main
from pymongo import AsyncMongoClient

from tests.support.servers import Servers

pytestmark = pytest.mark.integration

OLD = "old-master-secret-" + "o" * 32
NEW = "new-master-secret-" + "n" * 32


def _summary(output: str) -> dict[str, object]:
    found = json.loads(output[output.index("{") :])
    assert isinstance(found, dict)
    return found


async def test_keys_rotate_moves_case_keys_and_webhook_secrets_to_the_new_key(
    servers: Servers,
    mongo: AsyncMongoClient[Document],
    database_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    database = mongo[database_name]
    old_vault = KeyVault(database["case_keys"], MasterKeys.single(OLD))
    keys = {f"case-{i}": (await old_vault.create(f"case-{i}")).key for i in range(3)}
    # A webhook secret sealed before ids existed (as the old SecretBox sealed it).
    old_box = SecretBox(OLD)
    await database["partners"].insert_one(
        {
            "_id": "partner-1",
            "active": True,
            "webhook": {
                "url": "https://partner.example.org/hook",
                "secret": old_box.seal("partner-1", "whsec_old")[len("mk:1:") :],
                "signature_scheme": "standard",
            },
        }
    )
    for name, value in {
        "LINTAS_MONGODB_URI": servers.mongodb_uri,
        "LINTAS_KEYVAULT_DATABASE": database_name,
        "LINTAS_REFERRAL_DATABASE": database_name,
        "LINTAS_MASTER_KEY": NEW,
        "LINTAS_MASTER_KEY_ID": "2",
        "LINTAS_MASTER_KEYS_PREVIOUS": f"1={OLD}",
    }.items():
        monkeypatch.setenv(name, value)

    assert await asyncio.to_thread(main, ["keys", "rotate"]) == 0
    output = capsys.readouterr().out
    assert "case keys: 3 checked, 3 re-wrapped" in output
    summary = _summary(output)
    assert summary["previous_keys_can_be_removed"] is True
    assert summary["case_keys"] == {
        "current_id": "2",
        "checked": 3,
        "rewrapped": 3,
        "erased_meanwhile": 0,
        "unreadable": 0,
        "remaining": {},
        "current": 3,
    }
    assert summary["webhook_secrets"] == {"resealed": 1, "current": 0, "unreadable": 0}
    assert OLD not in output
    assert NEW not in output

    # Only the new key from now on.
    only_new = MasterKeys.single(NEW, "2")
    new_vault = KeyVault(database["case_keys"], only_new)
    for case, key in keys.items():
        assert (await new_vault.get(case)).key == key
    partners = MongoPartnerDirectory(database["partners"], MongoRoutingRepository(database["x"]))
    hook = await partners.webhook("partner-1")
    assert hook is not None
    assert hook.sealed_secret.startswith("mk:2:")
    assert SecretBox(only_new).open("partner-1", hook.sealed_secret) == "whsec_old"

    assert await asyncio.to_thread(main, ["keys", "rotate"]) == 0  # idempotent
    again = _summary(capsys.readouterr().out)
    assert again["case_keys"]["rewrapped"] == 0  # type: ignore[index]
    assert again["webhook_secrets"] == {"resealed": 0, "current": 1, "unreadable": 0}


async def test_keys_rotate_fails_while_an_entry_is_under_an_unknown_key(
    servers: Servers,
    mongo: AsyncMongoClient[Document],
    database_name: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    forgotten = MasterKeys.single("forgotten-master-secret-" + "f" * 32, "0")
    await KeyVault(mongo[database_name]["case_keys"], forgotten).create("case-lost")
    monkeypatch.setenv("LINTAS_MONGODB_URI", servers.mongodb_uri)
    monkeypatch.setenv("LINTAS_KEYVAULT_DATABASE", database_name)
    monkeypatch.setenv("LINTAS_REFERRAL_DATABASE", database_name)
    monkeypatch.setenv("LINTAS_MASTER_KEY_ID", "2")
    assert await asyncio.to_thread(main, ["keys", "rotate"]) == 1
    summary = _summary(capsys.readouterr().out)
    assert summary["previous_keys_can_be_removed"] is False
    assert summary["case_keys"]["remaining"] == {"0": 1}  # type: ignore[index]
