"""The risk service under test: a harness with the people of the role tests and polling helpers."""

from __future__ import annotations

import asyncio
from typing import Any

from opsat.common.testing.helpers import scalar
from opsat.common.testing.service import ServiceHarness

# (sub, org, roles) for `risk.token`
AGENT = ("agent-1", "ops", "agent")
LEAD = ("lead-1", "ops", "team_lead")
MANAGER = ("mgr-1", "ops", "manager")
OFFICER = ("rita", "ops", "risk_officer")
ADMIN = ("root", "ops", "admin")
AUDITOR = ("audit-1", "ops", "auditor")
REQUESTER = ("alice", "acme", "requester")


class Risk(ServiceHarness):
    def as_(self, who: tuple[str, str, str]) -> dict[str, str]:
        return self.token(*who)

    async def events(self) -> int:
        return await scalar(self.settings.database_url, "select count(*) from events")

    async def eventually(self, check: Any, timeout: float = 40.0) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while not (result := await check()):
            assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
            await asyncio.sleep(0.1)
        return result

    async def get(self, path: str, who: tuple[str, str, str] = AUDITOR, **params: Any) -> Any:
        r = await self.client.get(path, params=params, headers=self.as_(who))
        assert r.status_code == 200, r.text
        return r.json()
