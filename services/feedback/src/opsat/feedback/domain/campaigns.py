"""Relationship campaigns (handbook 4.1): a named survey of a template sent once to a list of customer contacts."""

from __future__ import annotations

from typing import Any

from opsat.common.domain import AlreadyExists, Conflict, DomainEvent, InvalidInput
from opsat.feedback.domain import events as ev
from opsat.feedback.domain.templates import TEMPLATE_ID

MAX_CONTACTS = 1000


def evolve(state: Any, event: DomainEvent) -> ev.CampaignLaunched:
    if isinstance(event, ev.CampaignLaunched):
        return event
    raise Conflict("this id is taken by another kind of record", field="campaign_id", code="id_taken")


def decide(state: Any, command: Any, now: Any, by: str) -> list[DomainEvent]:
    if state is not None:
        raise AlreadyExists(f"campaign {command.campaign_id} was launched already", field="campaign_id")
    contacts = list(dict.fromkeys(command.contact_ids))
    if not 1 <= len(contacts) <= MAX_CONTACTS:
        raise InvalidInput(f"a campaign names 1-{MAX_CONTACTS} contacts", field="contact_ids")
    if not command.name.strip():
        raise InvalidInput("name the campaign", field="name")
    if not TEMPLATE_ID.match(command.template_id):
        raise InvalidInput("not a template id", field="template_id")
    return [ev.CampaignLaunched(campaign_id=command.campaign_id, name=command.name.strip(),
                                template_id=command.template_id, contact_ids=contacts, at=now, by=by)]
