"""The feedback service's settings: survey timing, sampling, the token key, the SMTP relay, follow-ups and the
answer endpoint's rate limits (`OPSAT_FEEDBACK_*` where the name is the service's own)."""

from __future__ import annotations

import hashlib
import hmac

from pydantic import Field, SecretStr, model_validator

from opsat.common.settings import ServiceSettings


class FeedbackSettings(ServiceSettings):
    service_name: str = "feedback"

    # Transactional surveys (DOMAIN.md defaults)
    survey_validity_s: int = Field(default=7 * 86400, ge=60)
    survey_reminder_after_s: int = Field(default=3 * 86400, ge=0)
    sampling_window_s: int = Field(default=7 * 86400, ge=0)  # never the same person twice within this
    sampling_rate: float = Field(default=1.0, ge=0.0, le=1.0)  # share of eligible closures surveyed
    survey_template: str = "default"  # the template transactional surveys ask (its current version)
    default_language: str = Field(default="zh", pattern="^(zh|en)$")
    # Tokens are derived from this key (HMAC) and never stored; required outside dev and test.
    token_key: SecretStr | None = None
    answer_base_url: str = "http://127.0.0.1:8020/survey"  # the answer page; the token goes in its fragment

    # Delivery by email (SMTP relay)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    mail_from: str = "IT Service Desk <servicedesk@localhost>"
    mail_poll_interval_s: float = Field(default=1.0, gt=0)
    mail_retry_base_s: float = Field(default=30.0, gt=0)  # doubled per failed attempt
    mail_retry_max_s: float = Field(default=3600.0, gt=0)  # retried at least this often, for ever

    # Closed loop
    followup_due_s: int = Field(default=3 * 86400, ge=60)
    followup_default_owner: str = "service-desk"
    followup_owner_by_team: dict[str, str] = {}
    # Improvement actions are checked this long after the window following their implementation ends, so that
    # the answers of its last moments have reached the satisfaction read model.
    improvement_verify_grace_s: float = Field(default=3600.0, ge=0)

    # The public answer endpoint: at most this many calls per window, per client address and per token, counted
    # in PostgreSQL across every API replica
    answer_limit_per_client: int = Field(default=30, ge=1)
    answer_limit_per_token: int = Field(default=5, ge=1)
    answer_limit_window_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _token_key_length(self) -> FeedbackSettings:
        if self.token_key is not None and len(self.token_key.get_secret_value().encode()) < 32:
            raise ValueError("OPSAT_TOKEN_KEY must be at least 32 bytes")
        return self

    def token_key_bytes(self) -> bytes:
        """The key survey tokens are derived from: OPSAT_TOKEN_KEY, required in prod (the worker refuses to start
        without it); in dev and test derived from the stack's own dev signing key, so its processes agree."""
        if self.token_key is not None:
            return self.token_key.get_secret_value().encode()
        if self.environment == "prod" or self.auth_dev_key is None:
            raise ValueError("OPSAT_TOKEN_KEY is required (at least 32 bytes, e.g. openssl rand -hex 32)")
        return hmac.new(self.auth_dev_key.get_secret_value().encode(), b"feedback-token-key",
                        hashlib.sha256).hexdigest().encode()
