"""Enumerations and small value objects of a service request (服务请求)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import NamedTuple

# The limits of a request's fields: the domain enforces them and the HTTP bodies import them.
MAX_ID_LENGTH = 200  # ids and names: requester, organisation, team, assignee, watcher, link target
MAX_CHANGE_ID_LENGTH = 64  # client-chosen requirement change ids
MAX_TITLE_LENGTH = 200
MAX_TEXT_LENGTH = 20_000  # description, questions, answers, solutions, messages, requirement texts
MAX_REASON_LENGTH = 2_000  # reasons and comments on a decision, notes on a time entry
MAX_WATCHERS = 50  # watchers named at submit
MAX_MINUTES_PER_ENTRY = 24 * 60
MAX_EFFORT_HOURS = 100_000  # assessed effort of a requirement change

# Maximum length of every text field, by the field's name (the same name in commands and HTTP bodies).
TEXT_LIMITS: Mapping[str, int] = MappingProxyType(
    {
        **dict.fromkeys(
            ("request_id", "requester_id", "organisation_id", "service", "customer_tier", "team", "assignee",
             "watchers", "user_id", "target_id", "reply_id", "note_id", "entry_id"),
            MAX_ID_LENGTH,
        ),
        "change_id": MAX_CHANGE_ID_LENGTH,
        "title": MAX_TITLE_LENGTH,
        **dict.fromkeys(
            ("description", "question", "answer", "solution", "body", "scope", "acceptance_criteria",
             "impact_summary"),
            MAX_TEXT_LENGTH,
        ),
        **dict.fromkeys(("reason", "comment", "note"), MAX_REASON_LENGTH),
    }
)


class RequestKind(str, Enum):
    incident = "incident"
    service_request = "service_request"
    change = "change"
    problem = "problem"
    consultation = "consultation"
    complaint = "complaint"


class Channel(str, Enum):
    portal = "portal"
    email = "email"
    phone = "phone"
    chat = "chat"
    api = "api"
    monitoring = "monitoring"


class Priority(str, Enum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


class Status(str, Enum):
    submitted = "submitted"
    accepted = "accepted"
    in_progress = "in_progress"
    awaiting_customer = "awaiting_customer"
    resolved = "resolved"
    closed = "closed"
    rejected = "rejected"
    cancelled = "cancelled"
    reopened = "reopened"


class LinkType(str, Enum):
    """How this request relates to the target request. See CONTRADICTING_LINKS for what may not combine."""

    parent_of = "parent_of"
    child_of = "child_of"
    duplicate_of = "duplicate_of"
    caused_by = "caused_by"

    def contradicts(self, other: LinkType) -> bool:
        """Whether a link of this type and one of `other` to the same target cannot both be true."""
        return frozenset({self, other}) in CONTRADICTING_LINKS


# Pairs of link types that cannot both hold towards the same target request:
# - parent_of + child_of: the target would be above and below this request at once;
# - duplicate_of + parent_of / child_of: a duplicate is the same request, not a part or a whole of it;
# - duplicate_of + caused_by: a duplicate is the same request, not a consequence of it.
# caused_by combines with parent_of and child_of (a problem may be the parent of the incidents it causes).
CONTRADICTING_LINKS: frozenset[frozenset[LinkType]] = frozenset(
    {
        frozenset({LinkType.parent_of, LinkType.child_of}),
        frozenset({LinkType.duplicate_of, LinkType.parent_of}),
        frozenset({LinkType.duplicate_of, LinkType.child_of}),
        frozenset({LinkType.duplicate_of, LinkType.caused_by}),
    }
)


class ApprovalState(str, Enum):
    not_required = "not_required"
    pending = "pending"
    approved = "approved"
    declined = "declined"


class ChangeState(str, Enum):
    proposed = "proposed"
    assessed = "assessed"
    approved = "approved"
    rejected = "rejected"


class CloseReason(str, Enum):
    accepted = "accepted"  # the requester accepted the delivery
    auto_closed = "auto_closed"  # nobody answered the delivery in time


# Chinese UI labels, keyed by enum member (e.g. LABELS_ZH[Status.resolved]).
LABELS_ZH: dict[Enum, str] = {
    RequestKind.incident: "事件",
    RequestKind.service_request: "服务请求",
    RequestKind.change: "变更",
    RequestKind.problem: "问题",
    RequestKind.consultation: "咨询",
    RequestKind.complaint: "投诉",
    Channel.portal: "服务门户",
    Channel.email: "邮件",
    Channel.phone: "电话",
    Channel.chat: "在线沟通",
    Channel.api: "系统接口",
    Channel.monitoring: "监控告警",
    Priority.P1: "紧急",
    Priority.P2: "高",
    Priority.P3: "中",
    Priority.P4: "低",
    Status.submitted: "已提交",
    Status.accepted: "已受理",
    Status.in_progress: "处理中",
    Status.awaiting_customer: "待客户反馈",
    Status.resolved: "已解决",
    Status.closed: "已关闭",
    Status.rejected: "已拒绝",
    Status.cancelled: "已取消",
    Status.reopened: "已重新打开",
    LinkType.parent_of: "父请求",
    LinkType.child_of: "子请求",
    LinkType.duplicate_of: "重复于",
    LinkType.caused_by: "由…引起",
    ApprovalState.not_required: "无需审批",
    ApprovalState.pending: "待审批",
    ApprovalState.approved: "已批准",
    ApprovalState.declined: "已驳回",
    ChangeState.proposed: "已提出",
    ChangeState.assessed: "已评估",
    ChangeState.approved: "已批准",
    ChangeState.rejected: "已拒绝",
    CloseReason.accepted: "用户验收",
    CloseReason.auto_closed: "超时自动关闭",
}


@dataclass(frozen=True)
class Requirement:
    """Scope and acceptance criteria (需求确认). `version` grows with every approved change; an approved
    change that the requester did not propose is unconfirmed until the requester confirms its version."""

    scope: str
    acceptance_criteria: str
    version: int = 1
    confirmed: bool = False


@dataclass(frozen=True)
class RequirementChange:
    """A proposed change to a confirmed requirement (需求变更), against `base_version`."""

    change_id: str
    scope: str
    acceptance_criteria: str
    reason: str
    base_version: int
    proposed_by: str
    state: ChangeState = ChangeState.proposed
    effort_hours: float | None = None
    impact_summary: str | None = None
    rejection_reason: str | None = None


class Link(NamedTuple):
    """A typed link from this request to another one."""

    link_type: LinkType
    target_id: str
