"""The SLA monitor's settings: the shared ones (policies and calendars are event-sourced, not settings)."""

from __future__ import annotations

from opsat.common.settings import ServiceSettings


class SlaSettings(ServiceSettings):
    service_name: str = "sla"
    # Business services whose outages monitoring reports, with their availability targets in percent:
    # OPSAT_BUSINESS_SERVICES='{"mail": 99.9, "erp": 99.5}'.
    business_services: dict[str, float] = {}
