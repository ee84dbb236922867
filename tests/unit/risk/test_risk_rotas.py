"""On-call rotas: weekly rotation with hand-overs at a wall time in the team's zone, overrides that never
overlap, who is on call at an instant and over a span."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import reduce
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from opsat.common.domain import Conflict, InvalidInput
from opsat.risk.domain import commands as c
from opsat.risk.domain import rotas

NOW = datetime(2026, 11, 25, tzinfo=UTC)
MEMBERS = ("ann", "bo", "cy")


def rota(time_zone="Asia/Shanghai", starts_on="2026-11-02", handover="09:00", members=MEMBERS):
    [defined] = rotas.define(None, c.DefineRota(rota_id="net", team="network", role="on_call_engineer",
                                                starts_on=starts_on, members=members, time_zone=time_zone,
                                                handover_time=handover), NOW, "lead")
    return rotas.evolve(None, defined)


def with_overrides(state, spans):
    events = []
    for i, (start, end) in enumerate(spans):
        current = reduce(rotas.evolve, events, state)
        events += rotas.add_override(current, c.AddOverride("net", f"o{i}", f"sub{i}", start, end), NOW, "lead")
    return reduce(rotas.evolve, events, state)


def test_hand_over_happens_weekly_at_the_wall_time_in_the_teams_zone():
    r = rota()
    shanghai = ZoneInfo("Asia/Shanghai")
    assert r.on_call(datetime(2026, 11, 2, 8, 59, tzinfo=shanghai)) is None  # before the first shift
    assert r.on_call(datetime(2026, 11, 2, 9, 0, tzinfo=shanghai)) == "ann"
    assert r.on_call(datetime(2026, 11, 9, 8, 59, tzinfo=shanghai)) == "ann"
    assert r.on_call(datetime(2026, 11, 9, 9, 0, tzinfo=shanghai)) == "bo"
    assert r.on_call(datetime(2026, 11, 16, 1, 0, tzinfo=UTC)) == "cy"  # 09:00 in Shanghai
    assert r.on_call(datetime(2026, 11, 23, 1, 0, tzinfo=UTC)) == "ann"


def test_a_daylight_saving_change_does_not_move_the_hand_over():
    r = rota(time_zone="Europe/Berlin", starts_on="2026-10-19")
    berlin = ZoneInfo("Europe/Berlin")
    # Summer time ends on 25 October 2026: 09:00 Berlin is 07:00 UTC before and 08:00 UTC after.
    assert r.on_call(datetime(2026, 10, 26, 7, 30, tzinfo=UTC)) == "ann"
    assert r.on_call(datetime(2026, 10, 26, 9, 0, tzinfo=berlin)) == "bo"


@given(st.integers(0, 3 * 365 * 86400))
def test_after_the_start_exactly_one_member_is_on_call_and_a_week_later_the_next_one(offset):
    r = rota(time_zone="Europe/London")
    at = r.handover_at(0) + timedelta(seconds=offset)
    person = r.on_call(at)
    assert person in MEMBERS
    week = r.week_at(at)
    assert r.handover_at(week) <= at < r.handover_at(week + 1)
    assert r.on_call(r.handover_at(week + 1)) == MEMBERS[(MEMBERS.index(person) + 1) % len(MEMBERS)]


spans = st.tuples(st.integers(0, 60 * 24), st.integers(1, 60 * 24)).map(
    lambda t: (NOW + timedelta(minutes=t[0]), NOW + timedelta(minutes=t[0] + t[1])))


@given(st.lists(spans, max_size=8))
def test_overrides_that_are_kept_never_overlap_and_an_overlapping_one_is_refused_naming_start(candidates):
    state = rota()
    for i, (start, end) in enumerate(candidates):
        command = c.AddOverride("net", f"o{i}", f"sub{i}", start, end)
        overlaps = any(o.start < end and start < o.end for o in state.overrides)
        if overlaps:
            with pytest.raises(Conflict) as refused:
                rotas.add_override(state, command, NOW, "lead")
            assert refused.value.field == "start"
        else:
            state = reduce(rotas.evolve, rotas.add_override(state, command, NOW, "lead"), state)
    kept = sorted(state.overrides, key=lambda o: o.start)
    assert all(a.end <= b.start for a, b in zip(kept, kept[1:], strict=False))
    for o in kept:
        assert state.on_call(o.start) == o.person and state.on_call(o.end - timedelta(seconds=1)) == o.person


@given(st.integers(0, 60 * 86400), st.integers(1, 40 * 86400), st.lists(spans, max_size=3))
def test_shifts_cover_the_span_without_gaps_and_agree_with_on_call(start_offset, length, overrides):
    state = rota()
    ordered = sorted(overrides)
    assume(all(a[1] <= b[0] for a, b in zip(ordered, ordered[1:], strict=False)))
    state = with_overrides(state, ordered)
    start = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=start_offset)
    end = start + timedelta(seconds=length)
    shifts = state.shifts(start, end)
    assert shifts[0]["start"] == start and shifts[-1]["end"] == end
    assert all(a["end"] == b["start"] for a, b in zip(shifts, shifts[1:], strict=False))
    for shift in shifts:
        assert state.on_call(shift["start"]) == shift["person"]
        assert state.on_call(shift["end"] - timedelta(microseconds=1)) == shift["person"]


@pytest.mark.parametrize(("field", "spec"), [("time_zone", {"time_zone": "Mars/Olympus"}),
                                             ("handover_time", {"handover": "25:00"}),
                                             ("starts_on", {"starts_on": "2026-02-30"}),
                                             ("members", {"members": ()}), ("members", {"members": ("a", "a")})])
def test_bad_rotas_are_refused_naming_the_field(field, spec):
    with pytest.raises(InvalidInput) as refused:
        rota(**spec)
    assert refused.value.field == field


def test_an_override_must_end_after_it_starts():
    with pytest.raises(InvalidInput) as refused:
        rotas.add_override(rota(), c.AddOverride("net", "o1", "sub", NOW, NOW), NOW, "lead")
    assert refused.value.field == "end"
    assert date.fromisoformat(rota().to_spec()["starts_on"]) == date(2026, 11, 2)
