"""The CSAT rule on the real stack: surveys of team network answered through feedback's public API ->
feedback's outbox and relay -> `opsat.feedback.events` (`survey.answered`) -> the risk service's signal driver.

Nineteen answers are too few to judge; the twentieth brings the mean of the last 20 below 70 and raises exactly
one risk whose evidence is the twenty answer event ids; another low answer re-scores that risk; replaying the
feedback topic from the start (with the driver's dedupe rows gone too) creates nothing new.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from feedback_story import ALL_FOUR_GOOD, LOW, Feedback, free_port, issue_survey
from risk_harness import Risk, topics_visible

from opsat.common import observability as obs
from opsat.common.testing.helpers import scalar
from opsat.common.testing.infra import reset_group_to_earliest
from opsat.feedback.service import SERVICE as FEEDBACK
from opsat.risk.service import SERVICE as RISK


async def answered_ids(feedback: Feedback) -> list[str]:
    found = await feedback.rows("select event_id::text from events where event_type = "
                                "'opsat.feedback.survey.answered' order by position")
    return [r["event_id"] for r in found]


def applied() -> float:
    """Upstream records the driver has taken in: applied, or passed over (not among the events it handles)."""
    return sum(obs.EVENTS_APPLIED.labels("risk_signals", outcome)._value.get() for outcome in ("applied", "ignored"))


async def test_a_teams_csat_below_70_over_its_last_20_answers_raises_one_risk_and_a_replay_creates_nothing(
        run_service, kafka_bootstrap):
    feedback: Feedback = await run_service(FEEDBACK, harness=Feedback, smtp_port=free_port(),
                                           answer_limit_per_client=1000)
    risk: Risk = await run_service(RISK, harness=Risk)
    # Alternating good (93) and low (37) answers: the mean of any 20 is 65.
    scores = [ALL_FOUR_GOOD if i % 2 else LOW for i in range(21)]
    tokens = [await issue_survey(feedback, f"svy-csat-{i}", datetime.now(UTC)) for i in range(len(scores))]
    await topics_visible(feedback, risk)

    async def risks() -> list[dict]:
        return (await risk.get("/api/v1/risks"))["items"]

    async def seen(n: int) -> bool:
        return await scalar(risk.settings.database_url, "select count(*) from reactions.signal_observations"
                            " where source = 'feedback_response'") >= n

    async with feedback.worker(only=("relay",)), risk.worker():
        for token, ratings in zip(tokens[:19], scores, strict=False):
            r = await feedback.answer(token, ratings, nps=5, comment="slow to respond")
            assert r.status_code == 201, r.text
        await risk.eventually(lambda: seen(19))
        assert await risks() == []  # fewer than 20 answers: nothing to judge yet

        r = await feedback.answer(tokens[19], scores[19], nps=5, comment="slow to respond")
        assert r.status_code == 201, r.text

        async def raised() -> list[dict] | None:
            found = await risks()
            return found if found and found[0]["score"] else None

        [first] = await risk.eventually(raised)
        detail = await risk.get(f"/api/v1/risks/{first['risk_id']}")
        twenty = await answered_ids(feedback)
        assert len(twenty) == 20 and sorted(detail["evidence"]) == sorted(twenty)
        assert (detail["subject_type"], detail["subject"], detail["rule_id"], detail["category"]) == (
            "team", "network", "csat-team", "service_quality")
        assert (detail["likelihood"], detail["impact"], detail["score"]) == (3, 3, 9)

        # One more low answer: new evidence, the same mean of the last 20 (65).
        r = await feedback.answer(tokens[20], LOW, nps=1, comment="still slow")
        assert r.status_code == 201, r.text
        twenty_one = await answered_ids(feedback)

        async def rescored() -> dict | None:
            found = await risk.get(f"/api/v1/risks/{first['risk_id']}")
            return found if len(found["evidence"]) == 21 else None

        detail = await risk.eventually(rescored)
        assert sorted(detail["evidence"]) == sorted(twenty_one)
        assert [r["risk_id"] for r in await risks()] == [first["risk_id"]]

    events_before = await risk.events()
    upstream = await scalar(feedback.settings.database_url, "select count(*) from events")
    await scalar(risk.settings.database_url, "delete from reactions.processed_events where projection = 'risk_signals'")
    group = risk.service.runner_config(risk.settings, "risk_signals").group_id
    await reset_group_to_earliest(kafka_bootstrap, group, risk.settings.topic("feedback"), FEEDBACK.partitions)
    before = applied()
    async with risk.worker(only=("reaction",)):
        await risk.eventually(lambda: _true(applied() >= before + upstream))
        await asyncio.sleep(1.0)  # time for anything wrongly caused to reach the store
    assert await risk.events() == events_before
    assert len(await risks()) == 1


async def _true(value: bool) -> bool:
    return value
