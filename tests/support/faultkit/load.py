"""Load: clients driving requests through their life cycle over real HTTP, as a careful client would.

Every command carries an Idempotency-Key and the same X-Correlation-ID on every attempt; a 503, a cut
connection or a timeout is retried with the same key until acknowledged, so an outage may delay a command
but never apply it twice. What was acknowledged (event ids, versions) is what the checker holds the
system to.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from dataclasses import dataclass, field

import httpx

from opsat.common.auth import mint_token
from opsat.common.testing.service import TEST_SIGNING_KEY
from opsat.intake.settings import IntakeSettings

# (path, who, body): one request's life; time is logged twice so a duplicate would show in the sum.
LIFE = [("", "requester", {"kind": "incident", "title": "load", "impact": 2, "urgency": 2}),
        ("accept", "agent", {"team": "desk"}), ("start", "agent", None),
        ("time-entries", "agent", {"minutes": 7}), ("time-entries", "agent", {"minutes": 11}),
        ("resolve", "agent", {"solution": "done"}), ("accept-delivery", "requester", {})]


def count_5xx_not_503(statuses: Counter) -> int:
    return sum(n for status, n in statuses.items() if status.startswith("5") and status != "503")


@dataclass
class Ack:
    key: str
    request_id: str
    version: int
    event_ids: list[str]


@dataclass
class Load:
    api: str
    clients: int = 10
    think_s: float = 0.02
    acks: list[Ack] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # keys sent but never acknowledged (stopped mid-retry)
    statuses: Counter = field(default_factory=Counter)  # every answer: "201", "503", "transport", ...
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        settings = IntakeSettings(environment="test", auth_mode="dev", auth_dev_key=TEST_SIGNING_KEY,
                                  provider_organisations=["ops"])
        self.headers = {
            "requester": {"Authorization": "Bearer " + mint_token(settings, sub="req-1", org="acme",
                                                                    roles=["requester"])},
            "agent": {"Authorization": "Bearer " + mint_token(settings, sub="agent-1", org="ops", roles=["agent"])},
        }

    @property
    def errors_5xx_not_503(self) -> int:
        return count_5xx_not_503(self.statuses)

    def start(self) -> None:
        self._stop.clear()
        self._tasks = [asyncio.create_task(self._client(i)) for i in range(self.clients)]

    async def stop(self) -> None:
        """Let each client finish (or give up on) the command in hand, then return."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        self._tasks = []

    async def _client(self, n: int) -> None:
        async with httpx.AsyncClient(base_url=self.api, timeout=10) as http:
            while not self._stop.is_set():
                request_id = None
                for step, (path, who, body) in enumerate(LIFE):
                    key = f"c{n}-{next(self._ids)}-{step}"
                    url = "/api/v1/requests" + (f"/{request_id}/{path}" if path else "")
                    ack = await self._command(http, url, who, body, key)
                    if ack is None:
                        return  # stopped while retrying: the key is recorded as unknown
                    request_id = ack.request_id
                    await asyncio.sleep(self.think_s)

    async def _command(self, http: httpx.AsyncClient, url: str, who: str, body: dict | None, key: str) -> Ack | None:
        headers = {**self.headers[who], "Idempotency-Key": key, "X-Correlation-ID": key}
        attempts_after_stop = 0
        while True:
            try:
                r = await http.post(url, json=body, headers=headers)
                self.statuses[str(r.status_code)] += 1
                if r.status_code in (200, 201):
                    data = r.json()
                    ack = Ack(key, data["request_id"], data["version"], data["event_ids"])
                    self.acks.append(ack)
                    return ack
                if r.status_code < 500:
                    raise AssertionError(f"{url}: {r.status_code} {r.text}")  # a careful client never gets one
            except (httpx.TransportError, httpx.TimeoutException):
                self.statuses["transport"] += 1
            if self._stop.is_set():
                attempts_after_stop += 1
                if attempts_after_stop > 50:
                    self.unknown.append(key)
                    return None
            await asyncio.sleep(0.2)
