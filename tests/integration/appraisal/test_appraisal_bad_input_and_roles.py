"""Bad input and roles on the appraisal API: a clear problem naming the field, the right status, nothing stored."""

from __future__ import annotations

from opsat.appraisal.domain.kpis import DEFAULT_CATALOGUE
from opsat.appraisal.service import SERVICE as APPRAISAL


def kpis(**first):  # type: ignore[no-untyped-def]
    specs = [{**k.to_spec(), "target": float(k.target), "floor": float(k.floor), "weight": float(k.weight)}
             for k in DEFAULT_CATALOGUE.kpis]
    specs[0] = {**specs[0], **first}
    return specs


def fields(r) -> list[str]:  # type: ignore[no-untyped-def]
    assert r.headers["content-type"].startswith("application/problem+json"), r.text
    return [e["field"] for e in r.json().get("errors") or []]


async def test_bad_catalogues_and_periods_are_refused_and_store_nothing(run_service):
    appraisal = await run_service(APPRAISAL)
    admin, manager = appraisal.token("root", "ops", "admin"), appraisal.token("maria", "ops", "manager")
    client = appraisal.client

    for changes, field in (({"weight": 30}, "kpis.weight"), ({"target": 70}, "kpis[0].target"),
                           ({"direction": "lower"}, "kpis[0].target"), ({"numerator": ["made_up"]}, "kpis[0].numerator")):
        r = await client.post("/api/v1/catalogue/define", json={"kpis": kpis(**changes)}, headers=admin)
        assert r.status_code == 422 and field in fields(r), (changes, r.text)
    assert (await client.get("/api/v1/catalogue", headers=manager)).json()["version"] == 1

    r = await client.post("/api/v1/catalogue/define", json={"kpis": kpis(target=97)}, headers=admin)
    assert r.status_code == 200, r.text
    current = (await client.get("/api/v1/catalogue", headers=manager)).json()
    assert current["version"] == 2 and current["kpis"][0]["target"] == "97.0"
    assert (await client.get("/api/v1/catalogue?version=9", headers=manager)).status_code == 404

    for body, status, field in (
            ({"starts_on": "2026-11-02"}, 422, "starts_on"),
            ({"starts_on": "2026-11-01", "cadence": "weekly"}, 422, "cadence"),
            ({"starts_on": "2026-11-01", "time_zone": "Mars/Olympus"}, 422, "time_zone"),
            ({"starts_on": "2026-11-01", "catalogue_version": 9}, 404, "catalogue_version")):
        r = await client.post("/api/v1/periods/2026-11/open", json=body, headers=manager)
        assert (r.status_code, fields(r)) == (status, [field]), (body, r.text)
    assert (await client.get("/api/v1/periods/2026-11", headers=manager)).status_code == 404

    r = await client.post("/api/v1/periods/2026-11/open", json={"starts_on": "2026-11-01"}, headers=manager)
    assert r.status_code == 200, r.text
    again = await client.post("/api/v1/periods/2026-11/open", json={"starts_on": "2026-11-01"}, headers=manager)
    assert again.status_code == 409, again.text
    r = await client.post("/api/v1/periods/2026-11/appeals", headers=appraisal.token("bob", "ops", "agent"),
                          json={"subject": "bob", "kpi_id": "csat", "reason": "early"})
    assert r.status_code == 409, r.text  # nothing published yet
    assert (await client.post("/api/v1/periods/2026-11/publish", headers=manager)).status_code == 409
    assert (await client.post("/api/v1/periods/2026-11/calculate", headers=manager)).status_code == 200
    assert (await client.post("/api/v1/periods/2026-11/publish", headers=manager)).status_code == 200
    r = await client.post("/api/v1/periods/2026-11/publish", headers=manager)
    assert (r.status_code, r.json()["type"]) == (409, "/problems/already-published"), r.text
    r = await client.post("/api/v1/periods/2026-11/calculate", headers=manager)
    assert r.status_code == 409, r.text
    r = await client.post("/api/v1/periods/2026-11/close", headers=manager)
    assert r.status_code == 409, r.text  # the appeal window is open
    period = (await client.get("/api/v1/periods/2026-11", headers=manager)).json()
    assert period["status"] == "published" and period["catalogue_version"] == 2


async def test_roles_auditors_read_everything_and_change_nothing(run_service):
    appraisal = await run_service(APPRAISAL)
    client = appraisal.client
    manager = appraisal.token("maria", "ops", "manager")
    auditor, agent = appraisal.token("audrey", "ops", "auditor"), appraisal.token("bob", "ops", "agent")
    requester = appraisal.token("u-req", "acme", "requester")
    customer_manager = appraisal.token("boss", "acme", "manager")  # a staff role from a customer counts for nothing
    assert (await client.post("/api/v1/periods/2026-10/open", json={"starts_on": "2026-10-01"},
                              headers=manager)).status_code == 200

    for headers in (auditor, agent, requester, customer_manager):
        for path in ("/api/v1/periods/2026-10/calculate", "/api/v1/periods/2026-10/publish",
                     "/api/v1/periods/2026-10/close"):
            r = await client.post(path, headers=headers)
            assert r.status_code == 403, (path, r.text)
        r = await client.post("/api/v1/catalogue/define", json={"kpis": kpis()}, headers=headers)
        assert r.status_code == 403, r.text
    for path in ("/api/v1/periods", "/api/v1/periods/2026-10", "/api/v1/catalogue", "/api/v1/appeals",
                 "/api/v1/incentives", "/api/v1/improvement-plans", "/api/v1/periods/2026-10/scorecards"):
        assert (await client.get(path, headers=auditor)).status_code == 200, path
        assert (await client.get(path, headers=requester)).status_code == 403, path
    assert (await client.get("/api/v1/periods", headers={})).status_code == 401
    period = (await client.get("/api/v1/periods/2026-10", headers=auditor)).json()
    assert period["status"] == "open"
