"""Customer contacts: where a requester receives surveys and in which language (zh or en)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from opsat.common.domain import Conflict, DomainEvent, InvalidInput
from opsat.feedback.domain import events as ev

EMAIL = re.compile(r"^[^@\s<>\"',;]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
LANGUAGES = ("zh", "en")


@dataclass(frozen=True)
class Contact:
    contact_id: str
    organisation_id: str
    email: str
    language: str
    name: str | None


def evolve(state: Contact | None, event: DomainEvent) -> Contact:
    if isinstance(event, ev.ContactRegistered):
        return Contact(event.contact_id, event.organisation_id, event.email, event.language, event.name)
    raise Conflict("this id is not a contact's", field="contact_id", code="id_taken")


def decide(state: Contact | None, command: Any, now: Any, by: str) -> list[DomainEvent]:
    if state is not None and state.organisation_id != command.organisation_id:
        raise Conflict("the contact belongs to another organisation", field="organisation_id")
    if not EMAIL.match(command.email) or len(command.email) > 254:
        raise InvalidInput("not an e-mail address", field="email")
    if command.language not in LANGUAGES:
        raise InvalidInput("language is zh or en", field="language")
    return [ev.ContactRegistered(contact_id=command.contact_id, organisation_id=command.organisation_id,
                                 email=command.email, name=command.name, language=command.language, at=now, by=by)]
