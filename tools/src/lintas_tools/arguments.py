"""The `lintas` command line: every command and its arguments, and nothing else.

Kept apart from the commands themselves so that parsing (and `--help`) imports no
client library: each command imports what it needs when it runs (`lintas_tools.cli`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Final

from lintas_intake.domain.organisation import OrganisationKind
from lintas_shared.person_tokens import Role

DESCRIPTION: Final = """\
lintas up        start Kafka, FerretDB, the three services and the console, seed demo data
lintas down      stop everything `up` started
lintas status    what is running
lintas demo-seed (re)create the demo organisations, keys and console people
lintas user      console people: create, disable, reset-2fa, link (lintas user --help)
lintas dlq       dead letters: list, show, replay, discard (lintas dlq --help)
lintas keys rotate  re-wrap case keys and webhook secrets under the current master key
"""

DLQ_DESCRIPTION: Final = """\
`lintas dlq`: look at dead letters, replay them once the cause is fixed, or discard them.

  lintas dlq list [--topic T] [--all-states] [--json]
  lintas dlq show ENTRY [--json]
  lintas dlq replay (ENTRY | --all [--topic T]) [--dry-run] [--json]
  lintas dlq discard (ENTRY | --all [--topic T]) --reason TEXT [--json]

ENTRY is an id as `list` prints it (TOPIC:PARTITION:OFFSET, e.g. lintas.cases.v1.dlq:2:17)
or TOPIC OFFSET when the offset is in one partition only. A topic may be named by its
dead-letter name or its source name (lintas.cases.v1 means lintas.cases.v1.dlq).

`list` hides handled (replayed or discarded) entries unless --all-states is given. It
never prints payloads; `show` prints a payload only when it is not a valid CloudEvent,
truncated. A replay sends the record back to its source topic with its original key,
value and headers (without the lintas_dlq_* ones) and records it in the ledger, so a
second replay does nothing. An entry truncated when parked (its record was too large to
park whole; `list` and `show` say so, with its original size) is never replayed: that
would send a cut record; --all skips it. Who acted is --by, else $LINTAS_OPERATOR, else
the OS user.

Kafka is $LINTAS_KAFKA_BOOTSTRAP; the ledger of handled entries is the collection
`dead_letters` of database $LINTAS_OPS_DATABASE [lintas_ops] at $LINTAS_MONGODB_URI.
Exit code 1 when an entry is not found, any replay or discard failed, or the one entry
named to `replay` is truncated.
"""


def parser() -> argparse.ArgumentParser:
    """The parser of `lintas` and all its subcommands."""
    parser = argparse.ArgumentParser(
        prog="lintas", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the whole local stack with demo data")
    sub.add_parser("down", help="stop everything `up` started")
    sub.add_parser("status", help="show which processes are running")
    sub.add_parser("demo-seed", help="(re)create the demo organisations, keys and people")
    org = sub.add_parser("org", help="organisations and API keys").add_subparsers(
        dest="org_command", required=True
    )
    create = org.add_parser("create", help="create an organisation; prints its first key")
    create.add_argument("--name", required=True)
    create.add_argument("--kind", required=True, choices=[k.value for k in OrganisationKind])
    create.add_argument("--country", required=True, help="ISO 3166 alpha-2, e.g. ID")
    create.add_argument("--languages", help="comma-separated ISO 639-1, e.g. id,en")
    create.add_argument("--claim-types", help="legal partners: comma-separated claim types")
    create.add_argument("--capacity", type=int, help="legal partners: open referrals at most")
    org.add_parser("list", help="list organisations and their keys' ids")
    issue = org.add_parser("issue-key", help="issue another key; prints it once")
    issue.add_argument("org_id")
    revoke = org.add_parser(
        "revoke-key",
        help="revoke a key; answers once services with this LINTAS_API_KEY_CACHE_SECONDS "
        "can no longer accept it",
    )
    revoke.add_argument("org_id")
    revoke.add_argument("key_id")
    user = sub.add_parser("user", help="people who sign in to the console").add_subparsers(
        dest="user_command", required=True
    )
    user_create = user.add_parser(
        "create", help="add a person; prints the one-time link that sets their password"
    )
    user_create.add_argument("--org", required=True, help="the organisation's id (org-…)")
    user_create.add_argument("--role", required=True, choices=[r.value for r in Role])
    user_create.add_argument("--email", required=True)
    user_create.add_argument("--name", help="the name shown in the console (default: email)")
    user_create.add_argument("--language", choices=["id", "en"], default="id")
    for name, text in (
        ("disable", "stop a person signing in; ends their sessions now"),
        ("reset-2fa", "forget a person's authenticator (they enrol a new one)"),
        ("link", "a new one-time link to set a password (earlier links stop working)"),
    ):
        user.add_parser(name, help=text).add_argument("--email", required=True)
    imp = sub.add_parser("import", help="import cases from CSV or JSON Lines")
    imp.add_argument("file", type=Path)
    imp.add_argument(
        "--api-key",
        default=os.environ.get("LINTAS_API_KEY"),
        help="the NGO's API key (or LINTAS_API_KEY)",
    )
    imp.add_argument("--url", default=os.environ.get("LINTAS_INTAKE_URL", "http://127.0.0.1:8080"))
    imp.add_argument(
        "--report", type=Path, help="where refused rows are listed (default: FILE.errors.csv)"
    )
    imp.add_argument(
        "--concurrency", type=int, default=8, help="batches in flight at once (default 8)"
    )
    audit = sub.add_parser("audit", help="audit trail").add_subparsers(
        dest="audit_command", required=True
    )
    verify = audit.add_parser(
        "verify",
        help="check intake's and referral's keyed chains and their signed checkpoints; "
        "exit 1 if either is broken",
    )
    verify.add_argument(
        "--witness",
        type=Path,
        help="a file (kept off the database host) holding the heads this command last "
        "found intact: a chain behind or different from them is refused (catches a "
        "rollback to an old checkpoint); updated after every intact check",
    )
    keys = sub.add_parser("keys", help="master keys").add_subparsers(
        dest="keys_command", required=True
    )
    keys.add_parser(
        "rotate",
        help="re-wrap every case key and re-seal every webhook secret under the current "
        "master key (LINTAS_MASTER_KEY_ID), reading the previous ones meanwhile; safe to "
        "re-run; exit 1 while anything is left under a previous key",
    )
    _add_dlq(sub)
    _add_sms(sub)
    return parser


def _add_dlq(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `dlq` and its subcommands to the `lintas` parser."""
    dlq = commands.add_parser(
        "dlq",
        help="dead letters: list, show, replay, discard",
        description=DLQ_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = dlq.add_subparsers(dest="dlq_command", required=True)

    def entry_command(name: str, help_text: str, *, many: bool) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text, description=help_text)
        parser.add_argument(
            "entry",
            nargs="*" if many else "+",
            metavar="ENTRY",
            help="TOPIC:PARTITION:OFFSET as `list` prints it, or TOPIC OFFSET",
        )
        if many:
            parser.add_argument("--all", action="store_true", help="every unhandled entry")
            parser.add_argument(
                "--topic", action="append", default=[], help="with --all: only this topic"
            )
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        return parser

    listing = sub.add_parser(
        "list",
        help="one line per dead letter (never its payload)",
        description="One line per dead letter: id, state, when and where it failed, "
        "the event's type and id, and the reason. Handled entries are hidden unless "
        "--all-states is given.",
    )
    listing.add_argument(
        "--topic",
        action="append",
        default=[],
        help="a DLQ topic or its source topic (repeatable); default: every *.dlq topic",
    )
    listing.add_argument(
        "--all-states", action="store_true", help="also replayed and discarded entries"
    )
    listing.add_argument("--json", action="store_true", help="a JSON array instead")

    entry_command("show", "headers, reason and payload size of one dead letter", many=False)
    replay = entry_command(
        "replay", "send dead letters back to their source topic, once each", many=True
    )
    replay.add_argument("--dry-run", action="store_true", help="say what would be replayed")
    replay.add_argument("--by", default=None, help="who replays (default: $LINTAS_OPERATOR)")
    discard = entry_command("discard", "mark dead letters handled without replaying", many=True)
    discard.add_argument("--reason", required=True, help="why (kept in the ledger)")
    discard.add_argument("--by", default=None, help="who discards (default: $LINTAS_OPERATOR)")


def _add_sms(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `lintas sms`."""
    sms = sub.add_parser("sms", help="SMS held back by notify").add_subparsers(
        dest="sms_command", required=True
    )
    waiting = sms.add_parser("waiting", help="SMS waiting to go: when and why (no phones)")
    waiting.add_argument("--case", dest="reference", help="only this case reference")
    waiting.add_argument("--json", action="store_true", help="one JSON list")
