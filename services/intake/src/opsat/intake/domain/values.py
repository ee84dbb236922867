"""Enumerations and small value objects of a service request (服务请求)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

MAX_TITLE_LENGTH = 200
MAX_TEXT_LENGTH = 20_000  # description, replies, notes, reasons


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
    parent_of = "parent_of"
    child_of = "child_of"
    duplicate_of = "duplicate_of"
    caused_by = "caused_by"


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
    """Scope and acceptance criteria (需求确认). `version` grows with every approved change."""

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
