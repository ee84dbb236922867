"""Improvement actions (handbook 4.3, 4.4, PDCA): proposed from follow-ups or a trend with the scope they should
help (plan), approved by a manager who did not propose them, implemented at a stated time (do), verified by
comparing the scope's satisfaction in equal windows before and after that time (check), then closed or sent back
to plan for another cycle (act).

The check is a pure function of the responses answered in the two windows, so the same read model always gives
the same verdict: improved when the mean score rose and the share satisfied did not fall; insufficient data when
either window has fewer responses than the action asks for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from opsat.common.domain import DomainEvent, Forbidden, InvalidInput, InvalidTransition, NotDueYet, NotFound
from opsat.feedback.domain import commands as c
from opsat.feedback.domain import events as ev
from opsat.feedback.domain.scoring import SATISFIED_FROM

STATUSES = ("proposed", "approved", "implemented", "verified", "closed")
VERDICTS = ("improved", "not_improved", "insufficient_data")
SCOPE = ("team", "engineer", "kind", "service")
MAX_TEXT, MAX_TITLE, MAX_NAME, MAX_FOLLOWUPS = 4000, 200, 200, 50
WINDOW_DAYS = (1, 365)
MIN_RESPONSES = (1, 1000)
BACKDATE_LIMIT = timedelta(days=365)  # an implementation recorded later than this would compare stale windows

ALLOWED_FROM: dict[type, tuple[str, ...]] = {
    c.ApproveImprovement: ("proposed",),
    c.RecordImplementation: ("approved",),
    c.VerifyImprovement: ("implemented",),
    c.CloseImprovement: ("verified",),
    c.ReplanImprovement: ("verified",),
}


@dataclass(frozen=True)
class Figures:
    responses: int
    csat_mean: float | None
    satisfied_percent: float | None


@dataclass(frozen=True)
class Improvement:
    improvement_id: str
    organisation_id: str
    proposed_by: str
    window_days: int
    min_responses: int
    plan: str
    scope: dict[str, str]  # the read model's column -> value the check selects responses by
    status: str = "proposed"
    cycle: int = 1
    implemented_at: datetime | None = None
    verdict: str | None = None

    def windows(self) -> tuple[datetime, datetime]:
        """(start of the window before, end of the window after) the implementation."""
        assert self.implemented_at is not None
        length = timedelta(days=self.window_days)
        return self.implemented_at - length, self.implemented_at + length


# --- the check, pure ---------------------------------------------------------------------------------------
def _round(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def figures(scores: Iterable[float]) -> Figures:
    """CSAT of one window: count, mean score and % satisfied (score >= 75), exact to two decimals."""
    values = [Decimal(str(s)) for s in scores]
    if not values:
        return Figures(0, None, None)
    satisfied = sum(1 for v in values if v >= SATISFIED_FROM)
    return Figures(len(values), _round(sum(values) / len(values)), _round(Decimal(100 * satisfied) / len(values)))


def verdict(before: Figures, after: Figures, min_responses: int) -> str:
    if before.responses < min_responses or after.responses < min_responses:
        return "insufficient_data"
    assert before.csat_mean is not None and after.csat_mean is not None
    assert before.satisfied_percent is not None and after.satisfied_percent is not None
    if after.csat_mean > before.csat_mean and after.satisfied_percent >= before.satisfied_percent:
        return "improved"
    return "not_improved"


# --- the stream -------------------------------------------------------------------------------------------
def evolve(state: Improvement | None, event: DomainEvent) -> Improvement:
    match event:
        case ev.ImprovementProposed():
            scope = {name: value for name in SCOPE if (value := getattr(event, name)) is not None}
            return Improvement(event.improvement_id, event.organisation_id, event.by, event.window_days,
                               event.min_responses, event.plan, scope)
    if state is None:  # another kind of stream under this id
        raise NotFound("improvement action not found", field="improvement_id")
    match event:
        case ev.ImprovementApproved():
            return replace(state, status="approved")
        case ev.ImprovementImplemented():
            return replace(state, status="implemented", implemented_at=event.implemented_at)
        case ev.ImprovementVerified():
            return replace(state, status="verified", verdict=event.verdict)
        case ev.ImprovementClosed():
            return replace(state, status="closed")
        case ev.ImprovementReplanned():
            return replace(state, status="proposed", cycle=event.cycle, plan=event.plan, implemented_at=None,
                           verdict=None)
    raise TypeError(f"{type(event).__name__} is no improvement event")


def _text(value: str | None, field: str, *, required: bool, limit: int = MAX_TEXT) -> str | None:
    text = (value or "").strip()
    if required and not text:
        raise InvalidInput("this cannot be empty", field=field)
    if len(text) > limit:
        raise InvalidInput(f"at most {limit} characters", field=field)
    return text or None


def _whole(value: Any, bounds: tuple[int, int], field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not bounds[0] <= value <= bounds[1]:
        raise InvalidInput(f"a whole number {bounds[0]}-{bounds[1]}", field=field)
    return value


def _propose(command: c.ProposeImprovement, now: datetime, by: str) -> ev.ImprovementProposed:
    title = _text(command.title, "title", required=True, limit=MAX_TITLE)
    plan = _text(command.plan, "plan", required=True)
    scope = {name: _text(getattr(command, name), name, required=False, limit=MAX_NAME) for name in SCOPE}
    if not any(scope.values()):
        raise InvalidInput("name the scope the action should help: team, engineer, kind or service", field="team")
    followups = list(dict.fromkeys(command.followup_ids))
    if len(followups) > MAX_FOLLOWUPS:
        raise InvalidInput(f"at most {MAX_FOLLOWUPS} follow-ups", field="followup_ids")
    for i, followup_id in enumerate(followups):
        if followup_id not in command.known_followups:
            raise InvalidInput(f"follow-up {followup_id} not found", field=f"followup_ids.{i}")
    trend = _text(command.trend, "trend", required=False)
    if not followups and trend is None:
        raise InvalidInput("an action answers follow-ups (followup_ids) or a trend (trend); name one",
                           field="followup_ids")
    return ev.ImprovementProposed(
        improvement_id=command.improvement_id, at=now, by=by, organisation_id=command.organisation_id, title=title, plan=plan, followup_ids=followups,
        trend=trend, **scope, owner=_text(command.owner, "owner", required=False, limit=MAX_NAME) or by,
        window_days=_whole(command.window_days, WINDOW_DAYS, "window_days"),
        min_responses=_whole(command.min_responses, MIN_RESPONSES, "min_responses"))


def decide(state: Improvement | None, command: Any, now: datetime, by: str, *,
           check_grace: timedelta = timedelta(0)) -> list[DomainEvent]:
    """`check_grace`: how long after the window following the implementation its check is scheduled."""
    if isinstance(command, c.ProposeImprovement):
        return [_propose(command, now, by)]
    if state is None:
        raise NotFound("improvement action not found", field="improvement_id")
    allowed = ALLOWED_FROM[type(command)]
    if state.status not in allowed:
        raise InvalidTransition(f"an improvement action that is {state.status} cannot take "
                                f"{type(command).__name__}; it must be {' or '.join(allowed)}")
    base = {"improvement_id": state.improvement_id, "at": now, "by": by}
    match command:
        case c.ApproveImprovement():
            if by == state.proposed_by:
                raise Forbidden("nobody approves their own proposal", code="own_proposal")
            return [ev.ImprovementApproved(**base, note=_text(command.note, "note", required=False))]
        case c.RecordImplementation():
            at = command.implemented_at
            if at.tzinfo is None:
                raise InvalidInput("give a time zone offset", field="implemented_at")
            try:
                at.astimezone(UTC)
            except (OverflowError, ValueError):
                raise InvalidInput("give an instant with a time zone offset, within years 1-9999",
                                   field="implemented_at") from None
            if at > now:
                raise InvalidInput("an implementation is recorded once it took effect, not ahead",
                                   field="implemented_at")
            if at < now - BACKDATE_LIMIT:
                raise InvalidInput(f"at most {BACKDATE_LIMIT.days} days ago", field="implemented_at")
            return [ev.ImprovementImplemented(
                **base, implemented_at=at, description=_text(command.description, "description", required=True),
                verify_due_at=at + timedelta(days=state.window_days) + check_grace)]
        case c.VerifyImprovement():
            start, end = state.windows()
            if now < end:
                raise NotDueYet("the window after the implementation has not ended", due_at=end)
            before, after = command.before, command.after
            if before is None or after is None:
                raise TypeError("the aggregate's prepare supplies the figures of both windows")
            return [ev.ImprovementVerified(
                **base, before_from=start, implemented_at=state.implemented_at, after_until=end,
                before=ev.SatisfactionFigures(**vars(before)), after=ev.SatisfactionFigures(**vars(after)),
                min_responses=state.min_responses, verdict=verdict(before, after, state.min_responses))]
        case c.CloseImprovement():
            note = _text(command.note, "note", required=state.verdict != "improved")
            return [ev.ImprovementClosed(**base, verdict=state.verdict or "", note=note)]
        case c.ReplanImprovement():
            return [ev.ImprovementReplanned(
                **base, cycle=state.cycle + 1, reason=_text(command.reason, "reason", required=True),
                plan=_text(command.plan, "plan", required=False) or state.plan)]
    raise TypeError(f"no improvement rule for {type(command).__name__}")
