"""The feedback service as the kit builds it: app, worker, topics and `opsat-feedback api|worker|migrate|...`."""

from __future__ import annotations

from pathlib import Path

from opsat.common.service import Service
from opsat.feedback.api.routes import (
    campaign_router,
    contact_router,
    followup_router,
    improvement_router,
    router,
    template_router,
)
from opsat.feedback.app.delivery import MailSender
from opsat.feedback.app.handlers import FeedbackAggregates
from opsat.feedback.app.reactions import (
    FOLLOWUP_OVERDUE,
    IMPROVEMENT_CHECK,
    SURVEY_EXPIRY,
    SURVEY_REMINDER,
    CampaignSurveys,
    FollowUpOnAnswer,
    SurveyOnClose,
    SurveyScheduler,
)
from opsat.feedback.domain.commands import ExpireSurvey, MarkFollowUpOverdue, RemindSurvey, VerifyImprovement
from opsat.feedback.domain.events import FEEDBACK_EVENTS
from opsat.feedback.projections.improvements import ImprovementBoardProjection
from opsat.feedback.projections.queries import FeedbackQueries
from opsat.feedback.projections.satisfaction import SatisfactionProjection
from opsat.feedback.projections.service_facts import ServiceFactsProjection
from opsat.feedback.settings import FeedbackSettings

DESCRIPTION = """Satisfaction (满意度): transactional surveys on intake's closed requests, delivered by email with a
one-time link, scored against versioned templates; complaints and the closed loop of follow-ups; CSAT, NPS,
response rate and dimension breakdowns by period, team, engineer, kind and business service.

A request closed in intake issues a survey to its requester (never twice within the sampling window), emailed
through the SMTP relay with a link valid 7 days and one reminder after 3. Answering needs only the token
(`POST /api/v1/public/answers`). A score below 60, an NPS detractor or a complaint opens a follow-up.
Improvement actions (PDCA) are proposed from follow-ups or trends, approved, implemented and checked by comparing
the satisfaction of their scope in equal windows before and after the implementation (`/api/v1/improvements`).
Events: `GET /api/v1/events/asyncapi.json`."""

SERVICE = Service(
    name="feedback",
    module="opsat.feedback.service",
    description=DESCRIPTION,
    settings=FeedbackSettings,
    events=FEEDBACK_EVENTS,
    aggregate=FeedbackAggregates,
    routers=[template_router, contact_router, campaign_router, followup_router, improvement_router, router],
    queries=FeedbackQueries,
    projections=[SatisfactionProjection, ServiceFactsProjection, ImprovementBoardProjection],
    reactions=[SurveyOnClose, SurveyScheduler, FollowUpOnAnswer, CampaignSurveys],
    deadlines={SURVEY_REMINDER: RemindSurvey, SURVEY_EXPIRY: ExpireSurvey, FOLLOWUP_OVERDUE: MarkFollowUpOverdue,
               IMPROVEMENT_CHECK: VerifyImprovement},
    loops={"mail": MailSender},
    consumes=("intake", "sla"),
    migrations=Path(__file__).parent / "migrations" / "versions",
)
create_app = SERVICE.create_app
main = SERVICE.main
