"""The embedded default SMS provider: one JSON line per message in a local file.

It stands in for a gateway on a developer's machine and in the end-to-end tests, and
behaves like one where it matters: it returns a message id, and it can say whether it
already accepted a message under a client reference. Unlike a gateway it is ours, so
erasure reaches it: the lines of an erased case's messages lose their phone.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

from lintas_notify.domain.message import OutgoingSms


class FileSmsProvider:
    """Appends each SMS as a JSON object on its own line."""

    name = "file"

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = asyncio.Lock()
        # Lines waiting for the next append, each with its sender's answer. Sends made
        # while an append is under way go together in the next one: one write and one
        # fsync for many messages (a thread and an fsync each took notify's CPU).
        self._waiting: list[tuple[str, asyncio.Future[None]]] = []
        self.appends = 0  # appends made (tests: sends side by side share them)

    async def send(self, sms: OutgoingSms) -> str:
        """Append the message; returns its provider message id."""
        message_id = f"file-{uuid.uuid4()}"
        line = json.dumps(
            {
                "to": sms.to,
                "body": sms.body,
                "encoding": sms.encoding,
                "segments": sms.segments,
                "case_reference": sms.case_reference,
                "template": sms.template,
                "language": sms.language,
                "sent_at": datetime.now(UTC).isoformat(),
                "message_id": message_id,
                "client_reference": sms.id,
            },
            ensure_ascii=False,
        )
        appended = asyncio.get_running_loop().create_future()
        self._waiting.append((line, appended))
        async with self._lock:
            if not appended.done():  # else an earlier sender's append carried it
                group, self._waiting = self._waiting, []
                try:
                    await asyncio.to_thread(self._append, [line for line, _ in group])
                except BaseException as exc:
                    failure = (
                        exc if isinstance(exc, Exception) else RuntimeError("append interrupted")
                    )
                    for _, answer in group:
                        if answer is not appended and not answer.done():
                            answer.set_exception(failure)
                    raise
                for _, answer in group:
                    answer.set_result(None)
        await appended  # durable once this returns, whoever appended it
        return message_id

    def _append(self, lines: list[str]) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._path.open("a", encoding="utf-8") as out:
            out.write("".join(line + "\n" for line in lines))
            out.flush()
            os.fsync(out.fileno())
        self.appends += 1

    async def forget(self, client_references: Collection[str]) -> None:
        """Blank the phone (`to`) on the lines of these messages (erasure)."""
        wanted = set(client_references)
        if wanted:
            async with self._lock:
                await asyncio.to_thread(self._forget, wanted)

    def _forget(self, wanted: set[str]) -> None:
        if not self._path.exists():
            return
        out, changed = [], False
        with self._path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    out.append(line)
                    continue
                if entry.get("client_reference") in wanted and entry.get("to") is not None:
                    entry["to"], changed = None, True
                    line = json.dumps(entry, ensure_ascii=False) + "\n"
                out.append(line)
        if not changed:
            return
        # Written aside and renamed over: a crash leaves the old file or the new one.
        scratch = self._path.with_name(self._path.name + ".forget")
        with scratch.open("w", encoding="utf-8") as new:
            new.writelines(out)
            new.flush()
            os.fsync(new.fileno())
        scratch.replace(self._path)

    async def find_sent(self, client_reference: str) -> str | None:
        """The message id of an earlier line with this client reference, if any."""
        async with self._lock:
            return await asyncio.to_thread(self._find, client_reference)

    def _find(self, client_reference: str) -> str | None:
        if not self._path.exists():
            return None
        with self._path.open(encoding="utf-8") as lines:
            for line in lines:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash was never a sent message
                if entry.get("client_reference") == client_reference:
                    return str(entry["message_id"])
        return None
