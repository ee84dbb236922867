"""Outages, pure: reported by monitoring for a configured business service, ended once, never before they start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from opsat.common.domain import AlreadyExists, Conflict, InvalidInput
from opsat.sla_monitor.domain import commands as c
from opsat.sla_monitor.domain import outages

T0 = datetime(2026, 11, 2, 2, tzinfo=UTC)
SERVICES = {"mail": 99.9}


def fold(*commands: object) -> outages.Outage | None:
    state = None
    for command in commands:
        for event in outages.decide(state, command, T0, "monitoring", SERVICES):
            state = outages.evolve(state, event)
    return state


def test_an_outage_is_reported_then_ended():
    state = fold(c.ReportOutage("o-1", "mail", "major", T0), c.EndOutage("o-1", T0 + timedelta(minutes=5)))
    assert state == outages.Outage("o-1", "mail", "major", T0, T0 + timedelta(minutes=5))
    with pytest.raises(Conflict):
        fold(c.ReportOutage("o-1", "mail", "major", T0), c.EndOutage("o-1", T0 + timedelta(minutes=5)),
             c.EndOutage("o-1", T0 + timedelta(minutes=6)))
    with pytest.raises(AlreadyExists):
        fold(c.ReportOutage("o-1", "mail", "major", T0), c.ReportOutage("o-1", "mail", "major", T0))


@pytest.mark.parametrize(("commands", "field"), [
    ((c.ReportOutage("o-1", "mail", "major", T0, T0 - timedelta(seconds=1)),), "ended_at"),
    ((c.ReportOutage("o-1", "mail", "major", T0), c.EndOutage("o-1", T0 - timedelta(seconds=1))), "ended_at"),
    ((c.ReportOutage("o-1", "erp", "major", T0),), "service"),
    ((c.ReportOutage("o-1", "mail", "bad", T0),), "severity"),
    ((c.ReportOutage("o-1", "mail", "major", T0.replace(tzinfo=None)),), "started_at"),
])
def test_bad_reports_are_refused_naming_the_field(commands, field):
    with pytest.raises(InvalidInput) as refused:
        fold(*commands)
    assert refused.value.field == field
