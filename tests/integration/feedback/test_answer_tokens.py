"""The public answer endpoint on the real stack: only the token is needed; a used token is 409, an expired one 410,
an unknown one 404 exactly like a wrong one; rate limits per client and per token, shared by the API replicas,
answer 429 with Retry-After; bad answers are problem+json naming the field, and nothing is stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from feedback_story import ALL_FOUR_GOOD, LOW, Feedback, issue_survey

from opsat.common.testing.service import running
from opsat.feedback.domain import tokens
from opsat.feedback.service import SERVICE

NOW = datetime.now(UTC)


async def stored(feedback) -> int:  # type: ignore[no-untyped-def]
    return (await feedback.rows("select count(*) from events"))[0][0]


async def test_used_expired_unknown_and_wrong_tokens(feedback):
    fresh = await issue_survey(feedback, "svy-fresh", NOW)
    old = await issue_survey(feedback, "svy-old", NOW - timedelta(days=8))

    assert (await feedback.answer(fresh, ALL_FOUR_GOOD, nps=10)).status_code == 201
    used = await feedback.answer(fresh, ALL_FOUR_GOOD, nps=10)
    assert used.status_code == 409 and used.headers["content-type"] == "application/problem+json"

    before = await stored(feedback)
    expired = await feedback.answer(old, ALL_FOUR_GOOD, nps=10)
    assert expired.status_code == 410 and expired.json()["type"] == "/problems/survey-expired"
    assert (await feedback.client.post("/api/v1/public/survey-form", json={"token": old})).status_code == 410

    unknown = await feedback.answer(tokens.token_for(b"u" * 32, "svy-none"), ALL_FOUR_GOOD, nps=10)
    wrong = await feedback.answer(tokens.token_for(b"w" * 32, "svy-fresh"), ALL_FOUR_GOOD, nps=10)
    truncated = await feedback.answer(old[:-1], ALL_FOUR_GOOD, nps=10)
    assert unknown.status_code == wrong.status_code == truncated.status_code == 404
    assert unknown.content == wrong.content == truncated.content
    assert await stored(feedback) == before


@pytest.mark.feedback_settings(answer_limit_per_token=3, answer_limit_per_client=8)
async def test_rate_limits_per_token_and_per_client(feedback):
    guessed = tokens.token_for(b"g" * 32, "svy-x")
    assert [(await feedback.answer(guessed, LOW, nps=1)).status_code for _ in range(3)] == [404, 404, 404]
    limited = await feedback.answer(guessed, LOW, nps=1)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert "survey link" in limited.json()["detail"]
    # Other tokens from the same client: four more calls make eight, the ninth is refused.
    statuses = [(await feedback.answer(tokens.token_for(b"g" * 32, f"svy-{i}"), LOW, nps=1)).status_code
                for i in range(5)]
    assert statuses == [404, 404, 404, 404, 429]


@pytest.mark.feedback_settings(answer_limit_per_token=4, answer_limit_per_client=6)
async def test_the_rate_limits_are_shared_by_every_api_replica(feedback):
    async with running(SERVICE, feedback.settings, Feedback) as replica:
        guessed = tokens.token_for(b"r" * 32, "svy-x")
        apis = [feedback, replica, feedback, replica, feedback]  # one process alone would allow all five
        statuses = [(await api.answer(guessed, LOW, nps=1)).status_code for api in apis]
        assert statuses == [404, 404, 404, 404, 429]
        other = tokens.token_for(b"r" * 32, "svy-y")
        assert [(await api.answer(other, LOW, nps=1)).status_code for api in (replica, feedback)] == [404, 429]
        refused = await replica.answer(other, LOW, nps=1)
        assert refused.status_code == 429 and "this client" in refused.json()["detail"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
    counted = {r[0]: r[1] for r in await feedback.rows("select key, calls from rate_limits")}
    assert counted == {"client:127.0.0.1": 8, f"token:{tokens.token_hash(guessed)}": 5,
                       f"token:{tokens.token_hash(other)}": 3}  # counted under hashes only


@pytest.mark.feedback_settings(answer_limit_per_token=50)
async def test_bad_answers_name_the_field_and_store_nothing(feedback):
    token = await issue_survey(feedback, "svy-bad", NOW)
    before = await stored(feedback)
    cases = [
        ({**ALL_FOUR_GOOD, "attitude": 6}, 9, None, 1, "ratings.attitude"),
        ({k: v for k, v in ALL_FOUR_GOOD.items() if k != "resolution"}, 9, None, 1, "ratings.resolution"),
        ({**ALL_FOUR_GOOD, "speed": 3}, 9, None, 1, "ratings.speed"),
        (ALL_FOUR_GOOD, 11, None, 1, "nps"),
        (ALL_FOUR_GOOD, 9, None, 2, "template_version"),
        (ALL_FOUR_GOOD, 9, "x" * 2001, 1, "comment"),
        (LOW, 2, None, 1, "comment"),  # below 60 needs a comment
    ]
    for ratings, nps, comment, version, field in cases:
        r = await feedback.answer(token, ratings, nps, comment, version=version)
        assert r.status_code == 422, (field, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert field in [e["field"] for e in r.json()["errors"]], (field, r.json())
    r = await feedback.client.post("/api/v1/public/answers", json={"token": token, "template_version": 1,
                                                                   "ratings": {"attitude": "great"}, "nps": 9})
    assert r.status_code == 422 and "ratings.attitude" in [e["field"] for e in r.json()["errors"]]
    assert (await feedback.client.post("/api/v1/public/answers", content=b"{", headers={
        "content-type": "application/json"})).status_code == 400

    admin = feedback.token("root", "ops", "admin")
    dims = [{"key": "speed", "weight": 50, "label_zh": "速度", "label_en": "Speed"},
            {"key": "result", "weight": 40, "label_zh": "结果", "label_en": "Result"}]
    r = await feedback.client.post("/api/v1/templates/short/define", json={"dimensions": dims}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "dimensions"
    assert await stored(feedback) == before

    dims[1]["weight"] = 50  # now 100 %
    r = await feedback.client.post("/api/v1/templates/short/define", json={"dimensions": dims, "anonymous": True},
                                   headers=admin)
    assert r.status_code == 200, r.text
    template = (await feedback.client.get("/api/v1/templates/short", headers=admin)).json()
    assert template["version"] == 1 and template["anonymous"] is True
    assert (await feedback.answer(token, ALL_FOUR_GOOD, nps=9)).status_code == 201
