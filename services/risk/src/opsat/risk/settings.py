"""The risk service's settings: the shared ones and the score thresholds of the risk levels (signal rules,
plans and rotas are event-sourced configuration, not settings)."""

from __future__ import annotations

from pydantic import Field, field_validator

from opsat.common.settings import ServiceSettings
from opsat.risk.domain.register import Levels


class RiskSettings(ServiceSettings):
    service_name: str = "risk"
    # OPSAT_RISK_LEVELS: lowest score of each level above low (DOMAIN.md: low 1-4, medium 5-9, high 10-16,
    # critical 17-25).
    risk_levels: dict[str, int] = Field(default_factory=lambda: {"medium": 5, "high": 10, "critical": 17})

    @field_validator("risk_levels")
    @classmethod
    def _levels_hold_together(cls, value: dict[str, int]) -> dict[str, int]:
        if set(value) != {"medium", "high", "critical"}:
            raise ValueError("risk_levels names exactly medium, high and critical")
        Levels.from_mapping(value)
        return value
