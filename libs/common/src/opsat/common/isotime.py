"""Instants (and days) in query parameters: ISO 8601 only, with a time zone offset, within range.

Pydantic alone would also read "0" or "1700000000" as Unix time, which no client means, and would let a
naive time (no offset) or an instant beyond year 1..9999 in UTC through to the database.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AwareDatetime, BeforeValidator

from opsat.common.domain import InvalidInput

_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _iso_8601(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATETIME.match(value):
        raise ValueError("give an ISO 8601 date-time, e.g. 2026-01-31T00:00:00+08:00")
    return value


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_8601)]
# In a JSON body too: a number is not read as Unix time, and the offset is required.
AwareIsoDateTime = Annotated[AwareDatetime, BeforeValidator(_iso_8601)]


def _iso_date(value: object) -> object:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise ValueError("give an ISO 8601 date, e.g. 2026-01-31")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date)]


def aware(value: datetime | None, field: str) -> datetime | None:
    """`value` if it names an instant (has an offset and fits in UTC); a 422 naming `field` otherwise."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise InvalidInput("give a time zone offset, e.g. 2026-01-31T00:00:00+08:00", field=field)
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput("time is out of range", field=field) from None
    return value
