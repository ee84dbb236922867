"""Which feedback and risk events are facts about whom, and the facts a drill-down lists for each."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from opsat.appraisal.domain.facts import FACTS
from opsat.appraisal.projections.facts import (
    EmergencyActivated,
    FollowUpOpened,
    RiskIdentified,
    SurveyAnswered,
    subject_fact,
)
from opsat.appraisal.projections.queries import NAMED_FACTS, named_facts_of

AT = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)  # already 1 December in Shanghai


def test_an_answer_counts_its_exact_score_for_the_engineer_and_team_it_names():
    row = subject_fact(SurveyAnswered(at=AT, score=87.6, request_id="r1", team="network", assignee="alice"))
    assert row == {"fact": "csat", "request_id": "r1", "engineer": "alice", "team": "network",
                   "score": Decimal("87.6")}


def test_a_relationship_answer_names_no_one():
    row = subject_fact(SurveyAnswered(at=AT, score=40.0))
    assert row is not None and (row["request_id"], row["engineer"], row["team"]) == (None, None, None)


@pytest.mark.parametrize("source, fact", [("complaint", "complaint"), ("survey", None)])
def test_only_a_complaint_follow_up_is_a_complaint(source, fact):
    row = subject_fact(FollowUpOpened(at=AT, organisation_id="acme", source=source, request_id="r1"))
    assert (row and row["fact"]) == fact
    if row:  # it binds to a request only within the complaint's organisation
        assert row["organisation_id"] == "acme"


@pytest.mark.parametrize("subject_type, expected", [("team", {"fact": "risk", "team": "network"}), ("service", None)])
def test_a_risk_counts_for_a_team_not_for_a_service(subject_type, expected):
    assert subject_fact(RiskIdentified(at=AT, subject_type=subject_type, subject="network")) == expected


def test_an_emergency_names_its_team_and_the_request_that_triggered_it():
    assert subject_fact(EmergencyActivated(at=AT, team="network", trigger={"request_id": "r9", "priority": "P1"})) \
        == {"fact": "emergency", "request_id": "r9", "team": "network"}
    assert subject_fact(EmergencyActivated(at=AT, trigger={"request_id": 7})) == \
        {"fact": "emergency", "request_id": None, "team": None}


def test_named_facts_go_to_engineer_and_team_on_the_local_day():
    row = {"event_id": "e1", "fact": "csat", "at": AT, "score": Decimal("93.0"), "engineer": "alice",
           "team": "network"}
    facts = named_facts_of(row, ZoneInfo("Asia/Shanghai"))
    assert {(f.subject, f.name, f.amount, f.day) for f in facts} == {
        ("alice", "csat_responses", Decimal(1), date(2026, 12, 1)),
        ("alice", "csat_score_sum", Decimal("93.0"), date(2026, 12, 1)),
        ("team:network", "csat_responses", Decimal(1), date(2026, 12, 1)),
        ("team:network", "csat_score_sum", Decimal("93.0"), date(2026, 12, 1))}
    assert {f.event_id for f in facts} == {"e1"}
    risk = {"event_id": "e2", "fact": "risk", "at": AT, "score": None, "engineer": None, "team": "network"}
    assert [(f.subject, f.name) for f in named_facts_of(risk, ZoneInfo("UTC"))] == [("team:network", "risks")]


def test_every_named_fact_is_a_catalogue_fact():
    assert {name for names in NAMED_FACTS.values() for name in names} <= set(FACTS)
