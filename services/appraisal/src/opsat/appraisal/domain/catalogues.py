"""KPI catalogues as versioned configuration: the shipped default is version 1 of `default`; an administrator
defines the next version. A period keeps the version it opened with."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from opsat.appraisal.domain import commands as c
from opsat.appraisal.domain import events as ev
from opsat.appraisal.domain.kpis import DEFAULT_CATALOGUE, Catalogue
from opsat.common.domain import DomainEvent, InvalidInput

DEFAULT_ID = "default"


def shipped(catalogue_id: str) -> Catalogue | None:
    return DEFAULT_CATALOGUE if catalogue_id == DEFAULT_ID else None


def evolve(state: Catalogue | None, event: DomainEvent) -> Catalogue:
    assert isinstance(event, ev.CatalogueDefined), event.event_type
    return Catalogue.from_spec(event.version, event.catalogue)


def decide(state: Catalogue | None, command: Any, now: datetime, by: str) -> list[DomainEvent]:
    if command.catalogue_id != DEFAULT_ID:
        raise InvalidInput(f"one catalogue per organisation: its id is '{DEFAULT_ID}'", field="catalogue_id")
    assert isinstance(command, c.DefineCatalogue)
    current = state or shipped(command.catalogue_id)
    catalogue = Catalogue.from_spec((current.version if current else 0) + 1, {"kpis": list(command.kpis)})
    return [ev.CatalogueDefined(catalogue_id=command.catalogue_id, version=catalogue.version,
                                catalogue=catalogue.to_spec(), at=now, by=by)]
