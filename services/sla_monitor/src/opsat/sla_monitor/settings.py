"""The SLA monitor's settings: the shared ones (policies and calendars are event-sourced, not settings)."""

from __future__ import annotations

from opsat.common.settings import ServiceSettings


class SlaSettings(ServiceSettings):
    service_name: str = "sla"
