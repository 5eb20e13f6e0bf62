"""How many store commands one case costs, counted by the server itself.

FerretDB's `serverStatus` reports `metrics.commands.<name>.total` for every command it
served (MongoDB reports `opcounters` instead, read as a fallback). The count is taken
around a batch of cases, minus what the services' background loops (outbox relay,
timers, SMS schedule) asked for during an idle window of the same length, and divided
by the number of cases. Connection chatter (hello, ping, ...) is left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import httpx
from lintas_shared.mongo import UPKEEP_COMMANDS, Document, make_mongo_client

#: Commands that are connection upkeep, not work done for a case: what the services'
#: own counters leave out, and the commands only monitoring sends.
CHATTER = UPKEEP_COMMANDS | {"listDatabases", "getLog", "getCmdLineOpts", "whatsmyuri"}


async def command_totals(uri: str) -> dict[str, int]:
    """Commands served so far by the store, by name (connection chatter left out)."""
    client = make_mongo_client(uri, app_name="lintas-bench-counter")
    try:
        status: Document = await client.admin.command("serverStatus")
    finally:
        await client.close()
    commands = status.get("metrics", {}).get("commands")
    if isinstance(commands, Mapping) and commands:
        totals = {
            str(name): int(entry.get("total", 0))
            for name, entry in commands.items()
            if isinstance(entry, Mapping)
        }
    else:  # MongoDB
        totals = {str(k): int(v) for k, v in status.get("opcounters", {}).items()}
    return {name: count for name, count in totals.items() if name not in CHATTER}


def diff(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    """Counts in `after` not yet in `before`."""
    return {
        name: after[name] - before.get(name, 0)
        for name in after
        if after[name] - before.get(name, 0) > 0
    }


def per_case(
    work: Mapping[str, int],
    work_seconds: float,
    idle: Mapping[str, int],
    idle_seconds: float,
    cases: int,
) -> dict[str, float]:
    """Commands per case: the work window minus the idle rate over its length."""
    if cases <= 0:
        return {}
    result: dict[str, float] = {}
    for name in sorted(set(work) | set(idle)):
        background = idle.get(name, 0) / idle_seconds * work_seconds if idle_seconds > 0 else 0.0
        value = (work.get(name, 0) - background) / cases
        if value > 0.05:
            result[name] = round(value, 2)
    return result


#: One sample of `lintas_store_commands_total` in a service's /metrics exposition.
_SAMPLE = re.compile(
    r'^lintas_store_commands_total\{collection="(?P<collection>[^"]*)",'
    r'command="(?P<command>[^"]*)"\} (?P<value>[0-9.e+]+)$',
    re.M,
)


def parse_service_commands(exposition: str) -> dict[str, int]:
    """`collection.command` -> commands sent so far, from one service's /metrics."""
    return {
        f"{m.group('collection')}.{m.group('command')}": int(float(m.group("value")))
        for m in _SAMPLE.finditer(exposition)
    }


async def service_commands(urls: Mapping[str, str]) -> dict[str, dict[str, int]]:
    """What each service counted itself (`lintas_store_commands_total`), by service: the
    server's totals cannot say which service or which step sent a command."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        return {
            name: parse_service_commands((await client.get(f"{url}/metrics")).text)
            for name, url in urls.items()
        }


#: A SELECT as FerretDB's debug log shows it: `>>> SELECT  _ferretdb_sjson FROM \"t_1a2b\" ...`
_SELECT = re.compile(
    r'msg=">>> SELECT .*? FROM \\"(?P<table>[^\\]+)\\"(?P<rest>[^"]*)"'
    r"(?:.*? name=(?P<database>\w+) args=)?"
)
_TABLE_SUFFIX = re.compile(r"_[0-9a-f]{8}$")


def full_table_reads(log_lines: Iterable[str]) -> dict[str, int]:
    """SELECTs without a WHERE clause per table, from FerretDB's debug log: each one
    reads and decodes every document of a collection (a filter it could not push down
    to SQLite, or a query meant to read everything)."""
    counts: dict[str, int] = {}
    for line in log_lines:
        match = _SELECT.search(line)
        if match is None or "WHERE" in match.group("rest"):
            continue
        table = _TABLE_SUFFIX.sub("", match.group("table"))
        if match.group("database"):
            table = f"{match.group('database')}.{table}"
        counts[table] = counts.get(table, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))
