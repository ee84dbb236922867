"""Load a realistic demo month into the running services, through their public HTTP APIs only.

    make run && make demo                     # 3000 requests, seed 1
    .venv/bin/python -m tools.demo_month --requests 500 --seed 7

What it does, everything "now" (SLA clocks run on real time, nothing is back-dated):
- defines demo SLA policies (customer tier `demo`, 24x7, targets of seconds) so that some requests really breach;
- registers the customers' contacts, on-call rotas and two hand-identified risks;
- takes the requests of several customer organisations through their life (the service desk logs them for the
  customer; engineers of four teams accept, work, ask the customer, resolve; customers accept or reject the
  delivery, a few cancel); some are handled late on purpose, one team more often than the others;
- has monitoring report the outages behind a few incidents, customers file a few complaints;
- reads the survey emails (a Maildir, or any `MailSource`) and answers a share of them, scores following how the
  request went (low ones open follow-ups, some of which the team leads work);
- waits for the services to settle, then opens and calculates the appraisal period of the current month.

Every command carries an Idempotency-Key derived from the seed and the size, so a run interrupted and started again
repeats nothing: a second run with the same arguments creates nothing new. Risk signals need no call: three breaches
of one team within 7 days raise a risk by themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import hashlib
import mailbox
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import httpx

SERVICES = ("intake", "sla", "feedback", "risk", "appraisal")
# make run's ports: service N of the list on OPSAT_BASE_PORT (8000) + 10 N
BASE_PORT = int(os.environ.get("OPSAT_BASE_PORT", "8000"))
DEFAULT_URLS = {name: f"http://127.0.0.1:{BASE_PORT + 10 * i}" for i, name in enumerate(SERVICES)}
TIER = "demo"
# (first response, resolution) seconds per priority at pace 1, on the 24x7 calendar
TARGETS = {"P1": (15, 45), "P2": (20, 60), "P3": (30, 90), "P4": (40, 120)}
PRIORITY = {(1, 1): "P1", (1, 2): "P2", (2, 1): "P2", (1, 3): "P3", (2, 2): "P3", (3, 1): "P3"}  # else P4
TEAMS = {
    "network": (["li.wei", "zhang.min", "chen.jie", "ann.lee"], ["vpn", "wifi", "portal"]),
    "servers": (["wang.tao", "liu.yang", "bob.king"], ["erp", "mail"]),
    "database": (["zhao.lei", "sun.yan"], ["erp", "portal"]),  # short-handed: late more often
    "desktop": (["huang.li", "wu.hao", "eva.ng"], ["mail", "wifi"]),
}
TEAM_WEIGHTS = {"network": 30, "servers": 25, "database": 20, "desktop": 25}
LATE_SHARE = {"network": 0.08, "servers": 0.08, "database": 0.35, "desktop": 0.06}
LEADS = {team: f"lead.{team}" for team in TEAMS}
MANAGER, DESK, ADMIN, OFFICER, MONITORING = "wang.fang", "desk.amy", "root", "rita", "monitoring"
ORGS = {"acme": "en", "globex": "en", "initech": "zh", "umbrella": "zh", "hooli": "en"}
BUSINESS_SERVICES = ("vpn", "wifi", "portal", "erp", "mail")
KINDS = {"incident": 45, "service_request": 25, "consultation": 10, "change": 8, "problem": 7, "complaint": 5}
CELLS = {(1, 1): 3, (1, 2): 7, (2, 1): 10, (1, 3): 8, (2, 2): 22, (3, 1): 10, (2, 3): 15, (3, 2): 15, (3, 3): 10}
FATES = {"closed": 70, "reopened": 6, "resolved": 8, "in_progress": 5, "submitted": 4, "rejected": 3, "cancelled": 4}
TITLES = {
    "incident": ["{svc} is down for our floor", "{svc} very slow since this morning", "Cannot log in to {svc}",
                 "{svc} drops every few minutes"],
    "service_request": ["New account on {svc} for a joiner", "More storage on {svc}", "Access to {svc} reports"],
    "consultation": ["How do I export data from {svc}?", "Is {svc} available this weekend?"],
    "change": ["Upgrade {svc} to the new release", "Open a firewall port for {svc}"],
    "problem": ["Recurring outages of {svc}", "{svc} fails every night at 02:00"],
    "complaint": ["Nobody answered about {svc}", "Third time {svc} fails this week"],
}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LINK_TOKEN = re.compile(r"#t=([A-Za-z0-9_-]+)")
WEIGHTS = {"response_speed": 20, "professionalism": 25, "attitude": 20, "resolution": 35}  # the default template


def stable_fraction(*parts: object) -> float:
    """A number in [0, 1) fixed by its parts (not by the run's order of events)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick(rng: random.Random, weights: dict[Any, int]) -> Any:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


@dataclass(frozen=True)
class Planned:
    """One request's life as the demo plays it."""

    index: int
    organisation: str
    requester: str
    kind: str
    impact: int
    urgency: int
    channel: str
    service: str
    team: str
    engineer: str
    title: str
    fate: str  # closed | reopened | resolved | in_progress | submitted | rejected | cancelled
    late: str | None  # None | response | resolution
    asks_customer: bool
    logs_time: bool

    @property
    def priority(self) -> str:
        return PRIORITY.get((self.impact, self.urgency), "P4")

    @property
    def went_badly(self) -> bool:
        return self.late is not None or self.fate == "reopened"


@dataclass(frozen=True)
class Plan:
    seed: int
    size: int
    pace: float
    requests: tuple[Planned, ...]
    requesters: dict[str, tuple[str, str]]  # requester -> (organisation, language)

    def targets(self, priority: str) -> tuple[float, float]:
        response, resolution = TARGETS[priority]
        return response * self.pace, resolution * self.pace

    def key(self, *parts: object) -> str:
        """The Idempotency-Key of one step of this month (configuration steps use keys of their own, so that
        another seed or size repeats them rather than adding another version)."""
        return "demo-" + "-".join(map(str, (self.seed, self.size, *parts)))


def make_plan(size: int, seed: int, pace: float = 1.0) -> Plan:
    """The whole month, decided up front from the seed: the same arguments give the same plan."""
    people = max(8, min(250, size // 12))
    orgs = list(ORGS)
    requesters = {f"{orgs[k % len(orgs)]}.u{k:03d}": (orgs[k % len(orgs)], ORGS[orgs[k % len(orgs)]])
                  for k in range(people)}
    names = list(requesters)
    planned = []
    for i in range(size):
        rng = random.Random(f"{seed}:{size}:{i}")
        requester = names[rng.randrange(len(names))]
        team = pick(rng, TEAM_WEIGHTS)
        engineers, services = TEAMS[team]
        kind, (impact, urgency), fate = pick(rng, KINDS), pick(rng, CELLS), pick(rng, FATES)
        late = None
        if fate not in ("submitted", "rejected", "cancelled") and rng.random() < LATE_SHARE[team]:
            late = "response" if rng.random() < 0.4 else "resolution"
        if i < 3:  # three resolution breaches of one team within minutes: the risk signal's threshold
            team, engineers, services = "database", *TEAMS["database"]
            kind, impact, urgency, fate, late = "incident", 2, 2, "closed", "resolution"
        service = rng.choice(services)
        planned.append(Planned(
            index=i, organisation=requesters[requester][0], requester=requester, kind=kind, impact=impact,
            urgency=urgency, channel=rng.choice(["phone", "email", "chat", "portal", "email"]), service=service,
            team=team, engineer=rng.choice(engineers), title=rng.choice(TITLES[kind]).format(svc=service),
            fate=fate, late=late, asks_customer=rng.random() < 0.1, logs_time=rng.random() < 0.5))
    return Plan(seed=seed, size=size, pace=pace, requests=tuple(planned), requesters=requesters)


# --- mail ---------------------------------------------------------------------------------------------------
class MailSource(Protocol):
    def messages(self) -> Iterable[EmailMessage]: ...


@dataclass
class MaildirSource:
    """The survey emails the local SMTP sink of `make run` keeps (one file each)."""

    path: Path

    def messages(self) -> Iterable[EmailMessage]:
        if not self.path.exists():
            return []
        box = mailbox.Maildir(self.path, factory=None, create=False)
        return [email.message_from_bytes(box.get_bytes(key), policy=email.policy.default) for key in box.keys()]


@dataclass
class ListSource:
    """Emails already caught in memory (e.g. by an SMTP sink in a test)."""

    caught: list[EmailMessage]

    def messages(self) -> Iterable[EmailMessage]:
        return list(self.caught)


def invitations(source: MailSource, wanted: set[str]) -> dict[str, str]:
    """request id -> survey token, of the invitations about the wanted requests (reminders carry the same link)."""
    found: dict[str, str] = {}
    for message in source.messages():
        body = message.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        request, token = UUID.search(text), LINK_TOKEN.search(text)
        if request and token and request.group(0) in wanted:
            found.setdefault(request.group(0), token.group(1))
    return found


# --- HTTP ---------------------------------------------------------------------------------------------------
class Refused(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"{response.request.method} {response.request.url.path}: {response.status_code} "
                         f"{response.text[:300]}")
        self.response = response


@dataclass
class Api:
    """The five services' clients, tokens minted on demand, retries of 429/503 and dropped connections."""

    clients: dict[str, httpx.AsyncClient]
    mint: Callable[[str, str, str], str]
    concurrency: int = 16
    counts: Counter = field(default_factory=Counter)
    _tokens: dict[tuple[str, str, str], str] = field(default_factory=dict)
    _slots: asyncio.Semaphore | None = None

    def auth(self, sub: str, org: str, roles: str) -> dict[str, str]:
        if (sub, org, roles) not in self._tokens:
            self._tokens[(sub, org, roles)] = self.mint(sub, org, roles)
        return {"Authorization": f"Bearer {self._tokens[(sub, org, roles)]}"}

    def staff(self, sub: str, role: str = "agent") -> dict[str, str]:
        return self.auth(sub, "ops", role)

    async def call(self, service: str, method: str, path: str, headers: dict[str, str] | None = None,
                   json: Any = None, key: str | None = None, params: Any = None) -> httpx.Response:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        headers = {**(headers or {}), **({"Idempotency-Key": key} if key else {})}
        for attempt in range(60):
            try:
                async with self._slots:
                    response = await self.clients[service].request(method, path, headers=headers, json=json,
                                                                   params=params)
            except httpx.TransportError:
                if method != "GET" and key is None and attempt:
                    raise
                await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
                continue
            if response.status_code in (429, 503):
                await asyncio.sleep(min(15.0, float(response.headers.get("Retry-After", "1"))))
                continue
            return response
        raise RuntimeError(f"{service} {method} {path}: still busy after 60 attempts")

    async def command(self, service: str, path: str, headers: dict[str, str], body: Any = None, *,
                      key: str) -> dict[str, Any]:
        response = await self.call(service, "POST", path, headers, body, key)
        if response.status_code not in (200, 201):
            self.counts[f"{service} refused"] += 1
            raise Refused(response)
        data = response.json()
        self.counts[f"{service} {'replayed' if data.get('replayed') else 'created'}"] += 1
        return data

    async def get(self, service: str, path: str, headers: dict[str, str], **params: Any) -> Any:
        response = await self.call(service, "GET", path, headers, params=params or None)
        if response.status_code != 200:
            raise Refused(response)
        return response.json()

    @property
    def created(self) -> int:
        return sum(n for k, n in self.counts.items() if k.endswith(" created"))


# --- the month ----------------------------------------------------------------------------------------------
@dataclass
class Report:
    request_ids: dict[int, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    answered: int = 0
    already_answered: int = 0
    surveys_seen: int = 0
    period_id: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class DemoMonth:
    def __init__(self, api: Api, plan: Plan, mail: MailSource, *, answer_share: float = 0.6,
                 mail_wait_s: float = 90.0, settle_s: float = 120.0, log: Callable[[str], None] = print) -> None:
        self.api, self.plan, self.mail, self.log = api, plan, mail, log
        self.answer_share, self.mail_wait_s, self.settle_s = answer_share, mail_wait_s, settle_s
        self.report = Report()
        self.admission = asyncio.Semaphore(api.concurrency)

    async def run(self) -> Report:
        started = time.monotonic()
        await self.configure()
        self.log(f"loading {len(self.plan.requests)} requests ...")
        await asyncio.gather(*(self.live(p) for p in self.plan.requests))
        self.log(f"requests done ({time.monotonic() - started:.0f}s); outages, complaints, surveys ...")
        await self.outages()
        await self.complaints()
        await self.surveys()
        self.log("waiting for the services to settle ...")
        await self.settle()  # every answer's follow-up is listed before the leads pick theirs
        await self.follow_ups()
        await self.settle()
        await self.appraise()
        await self.collect_figures()
        self.report.seconds = time.monotonic() - started
        return self.report

    # configuration: SLA policies, contacts, rotas, known risks
    async def configure(self) -> None:
        api, plan = self.api, self.plan
        for priority in TARGETS:
            response, resolution = plan.targets(priority)
            await api.command("sla", f"/api/v1/policies/demo-{priority.lower()}/define", api.staff(ADMIN, "admin"), {
                "priorities": [priority], "customer_tiers": [TIER], "calendar_id": "24x7",
                "first_response_seconds": response, "resolution_seconds": resolution},
                key=f"demo-policy-{priority}-{response:g}-{resolution:g}")
        await asyncio.gather(*(api.command(
            "feedback", f"/api/v1/contacts/{person}/register", api.staff(ADMIN, "admin"),
            {"organisation_id": org, "email": f"{person}@{org}.example", "language": language},
            key=f"demo-contact-{person}") for person, (org, language) in plan.requesters.items()))
        monday = date.today() - timedelta(days=date.today().weekday())
        for team, (engineers, _) in TEAMS.items():
            lead = api.staff(LEADS[team], "team_lead")
            await api.command("risk", f"/api/v1/rotas/{team}-engineers/define", lead, {
                "team": team, "role": "on_call_engineer", "starts_on": monday.isoformat(), "members": engineers},
                key=f"demo-rota-{team}-{monday}")
            await api.command("risk", f"/api/v1/rotas/{team}-duty/define", lead, {
                "team": team, "role": "duty_manager", "starts_on": monday.isoformat(), "members": [LEADS[team]]},
                key=f"demo-duty-{team}-{monday}")
        for n, body in enumerate([
            {"title": "Only one DBA knows the restore procedure", "category": "personnel", "subject_type": "team",
             "subject": "database", "description": "restores depend on one person", "likelihood": 3, "impact": 5},
            {"title": "Mail gateway certificate expires next month", "category": "technical",
             "subject_type": "service", "subject": "mail", "description": "renewal not yet ordered",
             "likelihood": 2, "impact": 4}]):
            await api.command("risk", "/api/v1/risks", api.staff(OFFICER, "risk_officer"), body,
                              key=f"demo-risk-{n}")

    # one request's life
    async def live(self, p: Planned) -> None:
        try:
            await self._live(p)
        except Refused as exc:
            self.report.failures.append(f"request {p.index}: {exc}")

    async def _live(self, p: Planned) -> None:
        """Admitted at submit, a request keeps its place until it ends or waits on purpose (a late one), so the
        requests already running never queue behind new submits: on time stays on time however big the month."""
        holding = False

        async def wait_until(moment: float) -> None:
            nonlocal holding
            if holding:
                self.admission.release()
                holding = False
            await asyncio.sleep(max(0.0, moment - time.monotonic()))

        await self.admission.acquire()
        holding = True
        try:
            await self._steps(p, wait_until)
        finally:
            if holding:
                self.admission.release()

    async def _steps(self, p: Planned, wait_until: Callable[[float], Any]) -> None:
        api, plan = self.api, self.plan
        customer = api.auth(p.requester, p.organisation, "requester")
        engineer, desk = api.staff(p.engineer), api.staff(DESK)
        response_s, resolution_s = plan.targets(p.priority)
        margin = max(2.0, 0.15 * resolution_s)

        def step(name: str) -> str:
            return plan.key("r", p.index, name)

        created = await api.command("intake", "/api/v1/requests", desk, {
            "kind": p.kind, "channel": p.channel, "title": p.title, "description": f"{p.title} (reported by "
            f"{p.requester})", "impact": p.impact, "urgency": p.urgency, "service": p.service,
            "customer_tier": TIER, "team": p.team, "requester_id": p.requester,
            "organisation_id": p.organisation}, key=step("submit"))  # the desk routes it to a team as it logs it
        rid = created["request_id"]
        self.report.request_ids[p.index] = rid
        submitted = time.monotonic()
        path = f"/api/v1/requests/{rid}"
        if created["replayed"]:  # an earlier run submitted it: its lateness counts from then
            detail = await api.get("intake", path, desk, min_version=1)
            submitted -= (datetime.now(UTC) - datetime.fromisoformat(detail["submitted_at"])).total_seconds()
        if p.fate == "submitted":
            return
        if p.fate == "rejected":
            await api.command("intake", f"{path}/reject", engineer, {"reason": "not an IT matter"},
                              key=step("reject"))
            return
        if p.fate == "cancelled":
            await api.command("intake", f"{path}/cancel", customer, {"reason": "solved it myself"},
                              key=step("cancel"))
            return
        if p.late == "response":  # nobody picks it up in time
            await wait_until(submitted + response_s + margin)
        await api.command("intake", f"{path}/accept", engineer, {"team": p.team, "assignee": p.engineer},
                          key=step("accept"))
        if p.kind in ("service_request", "change"):
            await api.command("intake", f"{path}/requirement", engineer, {
                "scope": p.title, "acceptance_criteria": "the requester confirms it works"}, key=step("scope"))
            await api.command("intake", f"{path}/requirement/confirm", customer, None, key=step("confirm"))
        if p.kind == "change":
            await api.command("intake", f"{path}/approval/approve", api.staff(MANAGER, "manager"),
                              {"comment": "fits the change window"}, key=step("approve"))
        await api.command("intake", f"{path}/start", engineer, None, key=step("start"))
        if p.asks_customer:
            await api.command("intake", f"{path}/request-info", engineer,
                              {"question": "Which office are you in, and since when?"}, key=step("ask"))
            await asyncio.sleep(0.5)
            await api.command("intake", f"{path}/provide-info", customer,
                              {"answer": "Second floor, since about nine"}, key=step("answer"))
        if p.logs_time:
            await api.command("intake", f"{path}/time-entries", engineer,
                              {"minutes": 15 + p.index % 4 * 15, "note": "diagnosis"}, key=step("time"))
        if p.fate == "in_progress":
            return
        if p.late == "resolution":  # the fix takes longer than the target
            await wait_until(submitted + resolution_s + margin)
        await api.command("intake", f"{path}/resolve", engineer, {"solution": "found the cause and fixed it"},
                          key=step("resolve"))
        if p.fate == "reopened":
            await api.command("intake", f"{path}/reject-delivery", customer,
                              {"reason": "it happened again an hour later"}, key=step("reject-delivery"))
            await api.command("intake", f"{path}/start", engineer, None, key=step("restart"))
            await api.command("intake", f"{path}/resolve", engineer,
                              {"solution": "replaced the faulty part"}, key=step("resolve-again"))
        if p.fate in ("closed", "reopened"):
            await api.command("intake", f"{path}/accept-delivery", customer, {"comment": "works now"},
                              key=step("accept-delivery"))

    # monitoring's view: the outages behind the first few urgent incidents
    async def outages(self) -> None:
        api = self.api
        urgent = [p for p in self.plan.requests if p.kind == "incident" and p.priority in ("P1", "P2")
                  and p.fate in ("closed", "reopened") and p.index in self.report.request_ids][:3]
        monitoring = api.staff(MONITORING, "service")
        for p in urgent:
            detail = await api.get("intake", f"/api/v1/requests/{self.report.request_ids[p.index]}",
                                   api.staff(DESK))
            if not detail.get("resolved_at"):
                continue
            started = datetime.fromisoformat(detail["submitted_at"]) - timedelta(minutes=2)
            body = {"service": p.service, "severity": "critical" if p.priority == "P1" else "major",
                    "started_at": started.isoformat(), "ended_at": detail["resolved_at"]}
            try:
                await api.command("sla", f"/api/v1/outages/demo-{self.plan.seed}-{p.index}/report", monitoring, body,
                                  key=self.plan.key("outage", p.index))
            except Refused as exc:  # e.g. the service is not configured as a business service
                self.report.failures.append(f"outage of {p.service}: {exc}")

    async def complaints(self) -> None:
        unhappy = [p for p in self.plan.requests if p.went_badly and p.index in self.report.request_ids]
        for p in unhappy[: max(1, len(self.plan.requests) // 100)]:
            try:
                await self.api.command("feedback", "/api/v1/complaints",
                                       self.api.auth(p.requester, p.organisation, "requester"), {
                                           "complaint": f"{p.title}: it took far too long and nobody called back",
                                           "request_id": self.report.request_ids[p.index], "team": p.team,
                                           "assignee": p.engineer}, key=self.plan.key("complaint", p.index))
            except Refused as exc:
                self.report.failures.append(f"complaint {p.index}: {exc}")

    # surveys: the invitations arrive by email; a share of the customers answer
    async def surveys(self) -> None:
        by_id = {rid: self.plan.requests[i] for i, rid in self.report.request_ids.items()}
        closed = {rid for rid, p in by_id.items() if p.fate in ("closed", "reopened")}
        expected = len({by_id[rid].requester for rid in closed})  # at most one survey per person in 7 days
        deadline, stable_since, seen = time.monotonic() + self.mail_wait_s, time.monotonic(), 0
        while time.monotonic() < deadline:
            found = invitations(self.mail, closed)
            if len(found) != seen:
                seen, stable_since = len(found), time.monotonic()
            if seen >= expected or (seen and time.monotonic() - stable_since > 8):
                break
            await asyncio.sleep(1.0)
        found = invitations(self.mail, closed)
        self.report.surveys_seen = len(found)
        await asyncio.gather(*(self.answer(by_id[rid], token) for rid, token in sorted(found.items())))

    async def answer(self, p: Planned, token: str) -> None:
        if stable_fraction(self.plan.seed, "answers", p.requester) >= self.answer_share:
            return
        rng = random.Random(f"{self.plan.seed}:answer:{p.index}")
        if p.went_badly:
            base, nps = rng.choice([1, 2, 2, 3, 3]), rng.randint(0, 6)
        else:
            base, nps = rng.choice([3, 4, 4, 5, 5, 5]), rng.choice([6, 7, 8, 9, 9, 10, 10])
        ratings = {k: max(1, min(5, base + rng.choice([-1, 0, 0, 1]))) for k in WEIGHTS}
        score = sum(WEIGHTS[k] * r for k, r in ratings.items()) / 5  # the default template's 0-100 score
        comment = rng.choice(["Slow, and I had to chase it twice.", "Fixed, but it came back.",
                              "Nobody told me what was going on."]) if p.went_badly or score < 60 else \
            rng.choice([None, "Quick and friendly, thanks!", "Solved at the first try."])
        body = {"token": token, "template_version": 1, "ratings": ratings, "nps": nps, "comment": comment}
        response = await self.api.call("feedback", "POST", "/api/v1/public/answers", json=body)
        if response.status_code == 422 and "template_version" in response.text:  # the template has moved on
            form = await self.api.call("feedback", "POST", "/api/v1/public/survey-form", json={"token": token})
            if form.status_code == 200:
                body["template_version"] = form.json()["template_version"]
                response = await self.api.call("feedback", "POST", "/api/v1/public/answers", json=body)
        if response.status_code == 201:
            self.report.answered += 1
            self.api.counts["feedback created"] += 1
        elif response.status_code == 409:  # answered by an earlier run
            self.report.already_answered += 1
        else:
            self.report.failures.append(f"answer for {p.index}: {response.status_code} {response.text[:200]}")

    async def follow_ups(self) -> None:
        """Team leads work about half of the open follow-ups: contact, resolve, the customer accepts."""
        lead = self.api.staff(MANAGER, "manager")
        open_ones = await self.api.get("feedback", "/api/v1/follow-ups", lead, status=["open"], limit=500)
        for item in open_ones:
            fid = item["followup_id"]
            if stable_fraction(self.plan.seed, "follow-up", fid) >= 0.5:
                continue
            path = f"/api/v1/follow-ups/{fid}"
            try:
                await self.api.command("feedback", f"{path}/contact", lead, {"note": "called the customer"},
                                       key=self.plan.key("fu", fid, "contact"))
                await self.api.command("feedback", f"{path}/resolve", lead,
                                       {"resolution": "explained the delay, agreed a check-in"},
                                       key=self.plan.key("fu", fid, "resolve"))
                await self.api.command("feedback", f"{path}/customer-reaction", lead, {"accepted": True},
                                       key=self.plan.key("fu", fid, "reaction"))
            except Refused as exc:
                self.report.failures.append(f"follow-up {fid}: {exc}")

    async def settle(self) -> None:
        """Until the read models stop changing (the workers have caught up), or settle_s has passed."""
        auditor = self.api.staff("audit.demo", "auditor")
        probes = [("intake", "/api/v1/stats/backlog", {}), ("sla", "/api/v1/breaches", {"limit": 500}),
                  ("sla", "/api/v1/compliance", {"target": "resolution"}),
                  ("feedback", "/api/v1/response-rate", {}), ("feedback", "/api/v1/follow-ups", {"limit": 500}),
                  ("risk", "/api/v1/risks", {"limit": 500})]
        deadline, last, same = time.monotonic() + self.settle_s, None, 0
        while time.monotonic() < deadline and same < 3:
            snapshot = []
            for service, path, params in probes:
                data = await self.api.get(service, path, auditor, **params)
                snapshot.append(data if service != "intake" else {k: v for k, v in data.items() if k != "as_of"})
            same = same + 1 if snapshot == last else 0
            last = snapshot
            await asyncio.sleep(1.5)

    async def appraise(self) -> None:
        """Open the current month's period (Asia/Shanghai) and calculate it; again once if late facts show."""
        api, manager = self.api, self.api.staff(MANAGER, "manager")
        month = datetime.now(ZoneInfo("Asia/Shanghai")).date().replace(day=1)
        period = self.report.period_id = f"{month:%Y-%m}"
        path = f"/api/v1/periods/{period}"
        try:
            await api.command("appraisal", f"{path}/open", manager, {"starts_on": month.isoformat()},
                              key=self.plan.key("period", period))
        except Refused as exc:
            if exc.response.status_code != 409:  # 409: opened before (another seed): calculate it all the same
                raise
        for attempt in (1, 2):
            try:
                calculated = await api.command("appraisal", f"{path}/calculate", manager,
                                               key=self.plan.key("calc", period, attempt))
            except Refused as exc:
                self.report.failures.append(f"calculating {period}: {exc}")
                return
            cards = await api.get("appraisal", f"{path}/scorecards", manager, limit=500,
                                  min_version=calculated["version"])  # once the read model has them
            details = [await api.get("appraisal", f"{path}/scorecards/{c['subject']}", manager) for c in cards[:20]]
            if not any(d.get("pending_differences") for d in details):
                return

    async def collect_figures(self) -> None:
        api, auditor = self.api, self.api.staff("audit.demo", "auditor")
        f = self.report.figures
        f["intake backlog"] = await api.get("intake", "/api/v1/stats/backlog", auditor)
        f["sla compliance by team"] = await api.get("sla", "/api/v1/compliance", auditor, target="resolution",
                                                    group_by="team")
        f["sla breaches"] = len(await api.get("sla", "/api/v1/breaches", auditor, limit=500))
        f["feedback satisfaction by team"] = await api.get("feedback", "/api/v1/satisfaction", auditor,
                                                           group_by="team")
        f["risks"] = (await api.get("risk", "/api/v1/risks", auditor, limit=500))["items"]
        f["emergencies"] = len(await api.get("risk", "/api/v1/emergencies", auditor))
        if self.report.period_id:
            f["appraisal ranking"] = await api.get("appraisal", f"/api/v1/periods/{self.report.period_id}/scorecards",
                                                   auditor, limit=500)


def summary(report: Report, api: Api, urls: dict[str, str]) -> str:
    f = report.figures
    lines = [f"demo month loaded in {report.seconds:.0f}s: {len(report.request_ids)} requests, "
             f"{api.created} commands created, "
             f"{sum(n for k, n in api.counts.items() if k.endswith(' replayed'))} replayed (an earlier run's)"]
    backlog = f.get("intake backlog", {})
    lines.append(f"  intake     open requests: {backlog.get('total')}")
    for row in f.get("sla compliance by team", []):
        lines.append(f"  sla        team {row.get('team')}: {row.get('compliance_percent')} % resolved on time "
                     f"({row.get('met_on_time')}/{row.get('decided')})")
    lines.append(f"  sla        breaches listed: {f.get('sla breaches')}")
    for row in f.get("feedback satisfaction by team", []):
        lines.append(f"  feedback   team {row.get('team')}: CSAT {row.get('csat_mean')} ({row.get('satisfied_percent')} % "
                     f"satisfied), NPS {row.get('nps')}, "
                     f"{row.get('responses')} responses")
    lines.append(f"  feedback   surveys seen {report.surveys_seen}, answered now {report.answered}, "
                 f"answered before {report.already_answered}")
    lines.append(f"  risk       {len(f.get('risks', []))} risks in the register, the highest:")
    for risk in f.get("risks", [])[:6]:
        lines.append(f"  risk       {risk.get('title')} ({risk.get('subject')}): score {risk.get('score')} "
                     f"{risk.get('level')} [{risk.get('source')}]")
    lines.append(f"  risk       emergencies: {f.get('emergencies')}")
    for card in f.get("appraisal ranking", [])[:5]:
        lines.append(f"  appraisal  #{card.get('rank')} {card.get('subject')}: {card.get('total')} "
                     f"({card.get('grade')})")
    if report.failures:
        lines.append(f"  {len(report.failures)} steps refused, first: {report.failures[0]}")
    period = report.period_id or "YYYY-MM"
    lines += ["", "Try (tokens: . .local/auth.env; opsat-token --sub audit --org ops --roles auditor):",
              f"  {urls['intake']}/api/v1/requests?status=closed&limit=20",
              f"  {urls['intake']}/api/v1/stats/backlog",
              f"  {urls['sla']}/api/v1/compliance?target=resolution&group_by=team",
              f"  {urls['sla']}/api/v1/breaches",
              f"  {urls['sla']}/api/v1/metrics/response-times?group_by=team",
              f"  {urls['sla']}/api/v1/availability",
              f"  {urls['feedback']}/api/v1/satisfaction?group_by=team",
              f"  {urls['feedback']}/api/v1/follow-ups?status=open",
              f"  {urls['risk']}/api/v1/risks?open_only=true",
              f"  {urls['risk']}/api/v1/heat-map",
              f"  {urls['appraisal']}/api/v1/periods/{period}/scorecards",
              f"  {urls['appraisal']}/api/v1/periods/{period}/scorecards?kind=team"]
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------------------------
def minter_from(auth_env: Path) -> Callable[[str, str, str], str]:
    """Tokens signed with the local stack's dev key (written by `make run` into .local/auth.env)."""
    from opsat.common.auth import mint_token
    from opsat.common.settings import ServiceSettings

    values = dict(re.findall(r"(OPSAT_AUTH_DEV_KEY)=(\S+)", auth_env.read_text()))
    if "OPSAT_AUTH_DEV_KEY" not in values:
        raise SystemExit(f"no OPSAT_AUTH_DEV_KEY in {auth_env}: start the services with `make run` first")
    settings = ServiceSettings(environment="dev", auth_mode="dev", auth_dev_key=values["OPSAT_AUTH_DEV_KEY"])
    return lambda sub, org, roles: mint_token(settings, sub=sub, org=org, roles=roles.split(","), ttl_s=8 * 3600)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo_month", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="how many requests (default 3000)")
    parser.add_argument("--seed", type=int, default=1, help="the same seed and size repeat nothing")
    parser.add_argument("--pace", type=float, default=1.0,
                        help="SLA targets scale (1: P1 15 s/45 s .. P4 40 s/120 s); longer runs, fewer breaches")
    parser.add_argument("--concurrency", type=int, default=16,
                        help="requests being worked at once (and HTTP calls in flight)")
    parser.add_argument("--local", type=Path, default=Path(".local"), help="make run's state folder")
    parser.add_argument("--maildir", type=Path, default=None, help="default: <local>/mail")
    for name in SERVICES:
        parser.add_argument(f"--{name}-url", default=DEFAULT_URLS[name])
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    urls = {name: getattr(args, f"{name}_url") for name in SERVICES}
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    clients = {name: httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) for name, url in urls.items()}
    try:
        api = Api(clients, minter_from(args.local / "auth.env"), concurrency=args.concurrency)
        plan = make_plan(args.requests, args.seed, args.pace)
        demo = DemoMonth(api, plan, MaildirSource(args.maildir or args.local / "mail"))
        report = await demo.run()
        print(summary(report, api, urls))
        return 0
    except httpx.ConnectError as exc:
        print(f"cannot reach a service ({exc}); start them with `make run`", file=sys.stderr)
        return 1
    finally:
        for client in clients.values():
            await client.aclose()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
