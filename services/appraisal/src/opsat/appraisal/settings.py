"""The appraisal service's settings: the shared ones (the catalogue and periods are event-sourced)."""

from __future__ import annotations

from opsat.common.settings import ServiceSettings


class AppraisalSettings(ServiceSettings):
    service_name: str = "appraisal"
