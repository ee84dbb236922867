"""Intake's settings: the shared ones plus the intake policy (JSON in the environment)."""

from __future__ import annotations

from typing import Any

from opsat.common.settings import ServiceSettings


class IntakeSettings(ServiceSettings):
    service_name: str = "intake"
    # OPSAT_INTAKE_POLICY='{"reopen_window_days": 5, "priority_matrix": {"P1": [[1,1],[1,2]], ...}}'
    intake_policy: dict[str, Any] = {}
    # OPSAT_INTAKE_POLICY_BY_ORG='{"acme": {"auto_close_business_days": 5}}' (merged over intake_policy)
    intake_policy_by_org: dict[str, dict[str, Any]] = {}
