"""A resolver with answers a test sets, and a sender that records instead of sending: so
webhook address rules are tested without real DNS."""

from __future__ import annotations

from dataclasses import dataclass, field

from lintas_referral.domain.webhooks import IPAddress


@dataclass
class FakeResolver:
    """Answers from `answers`; a name not in it does not resolve."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    async def resolve(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return list(self.answers.get(host, []))


@dataclass
class RecordingSender:
    """Keeps (url, address) of every POST and answers `status`."""

    status: int = 204
    sent: list[tuple[str, IPAddress]] = field(default_factory=list)

    async def post(self, url: str, address: IPAddress, body: bytes, headers: dict[str, str]) -> int:
        self.sent.append((url, address))
        return self.status
