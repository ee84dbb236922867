"""The happy path end to end: HTTP commands -> event store -> Kafka -> read model -> HTTP queries."""

from __future__ import annotations

import json

from opsat.common.testing.infra import consume_all


async def test_submit_to_close_shows_timeline_and_cloudevents(intake, kafka_bootstrap):
    requester = intake.token("u-req", "acme", "requester")
    agent = intake.token("agent-1", "ops", "agent")
    async with intake.worker():
        rid = await intake.submit(requester, kind="incident", impact=1, urgency=1, team="network")
        steps = [("accept", agent, {"assignee": "agent-1"}), ("start", agent, None),
                 ("resolve", agent, {"solution": "restarted the VPN concentrator"}),
                 ("accept-delivery", requester, {"comment": "works again"})]
        version = 1
        for path, who, body in steps:
            r = await intake.client.post(f"/api/v1/requests/{rid}/{path}", json=body, headers=who)
            assert r.status_code == 200, (path, r.text)
            assert r.json()["version"] > version
            version = r.json()["version"]
        view = await intake.wait_for(rid, version, requester)
        assert view["status"] == "closed"
        assert view["priority"] == "P1"
        assert view["team"] == "network" and view["assignee"] == "agent-1"
        timeline = (await intake.client.get(f"/api/v1/requests/{rid}/timeline", headers=requester)).json()
        assert [e["event_type"].split(".")[-2] for e in timeline] == [
            "submitted", "accepted", "work_started", "resolved", "closed"]
        assert timeline[-1]["summary"] == "closed: accepted"
        assert timeline[-2]["summary"] == "resolved: restarted the VPN concentrator"

    records = await consume_all(kafka_bootstrap, intake.settings.topic("intake"), min_count=version)
    mine = [json.loads(r.value) for r in records if r.key.decode() == rid]
    assert [int(e["sequence"]) for e in mine] == list(range(1, version + 1))
    first = mine[0]
    assert first["specversion"] == "1.0" and first["type"] == "opsat.intake.request.submitted.v1"
    assert first["subject"] == rid and first["source"] == "/opsat/intake" and first["tenant"] == "acme"
    assert first["data"]["priority"] == "P1"
    for record in records:
        assert dict(record.headers)["id"].decode() == json.loads(record.value)["id"]
