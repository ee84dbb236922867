"""The survey emails (invitation and reminder) in Chinese and English: subject and plain-text body.

The link carries the token in its fragment (`#t=...`): browsers never send a fragment to a server, so the
token stays out of every access log; the answer page posts it in the request body.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

SUBJECTS = {
    ("invitation", "zh"): "请评价我们的服务：{request_id}",
    ("invitation", "en"): "How did we do? Your request {request_id}",
    ("reminder", "zh"): "提醒：请评价我们的服务：{request_id}",
    ("reminder", "en"): "Reminder: how did we do? Your request {request_id}",
    ("campaign", "zh"): "运维服务满意度调查",
    ("campaign", "en"): "How satisfied are you with our IT operations service?",
}
CAMPAIGN_BODIES = {
    "zh": "您好，\n\n我们正在进行运维服务满意度调查，请花一分钟评价我们的服务（无需登录）：\n\n{link}\n\n"
          "链接在 {expires} 前有效，只能使用一次。\n\n运维服务台",
    "en": "Hello,\n\nwe are asking our customers how satisfied they are with our IT operations service. Please take a "
          "minute to tell us (no login needed):\n\n{link}\n\nThe link works once and is valid until {expires}.\n\n"
          "IT service desk",
}
BODIES = {
    "zh": ("您好，\n\n您的服务请求 {request_id} 已关闭。请花一分钟评价我们的服务（无需登录）：\n\n{link}\n\n"
           "链接在 {expires} 前有效，只能使用一次。\n\n运维服务台"),
    "en": ("Hello,\n\nyour service request {request_id} has been closed. Please take a minute to rate our service "
           "(no login needed):\n\n{link}\n\nThe link works once and is valid until {expires}.\n\nIT service desk"),
}


@dataclass(frozen=True)
class SurveyMail:
    purpose: str  # invitation | reminder
    language: str  # zh | en
    recipient: str
    sender: str
    request_id: str | None  # None: a relationship survey of a campaign
    expires_at: datetime


def answer_link(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}#t={token}"


def render(mail: SurveyMail, link: str, message_id: str) -> EmailMessage:
    language = mail.language if mail.language in BODIES else "zh"
    message = EmailMessage()
    message["From"] = mail.sender
    message["To"] = mail.recipient
    expires = mail.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    if mail.request_id is None:  # a campaign's relationship survey
        subject = SUBJECTS[("campaign", language)]
        if mail.purpose == "reminder":
            subject = ("提醒：" if language == "zh" else "Reminder: ") + subject
        body = CAMPAIGN_BODIES[language].format(link=link, expires=expires)
    else:
        subject = SUBJECTS[(mail.purpose, language)].format(request_id=mail.request_id)
        body = BODIES[language].format(request_id=mail.request_id, link=link, expires=expires)
    message["Subject"] = subject
    message["Message-ID"] = message_id
    message.set_content(body)
    return message
