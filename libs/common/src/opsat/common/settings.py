"""Configuration from environment variables `OPSAT_*` (pydantic-settings).

Every service uses `ServiceSettings`; a service adds its own fields by subclassing.
Nothing is read at import time: `main.create_app(settings)` and `worker.run(settings)` take an instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPSAT_", extra="ignore")

    service_name: str = "opsat"
    environment: Literal["dev", "test", "prod"] = "dev"

    # PostgreSQL: one database per service (SQLAlchemy async URL).
    database_url: str = "postgresql+asyncpg://opsat@127.0.0.1:5432/opsat"
    # About the requests in flight per process (the bench keeps 48 in flight against one process).
    database_pool_size: int = Field(default=32, ge=1, le=200)

    # Kafka: topics are named f"{topic_namespace}.{service}.events".
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_namespace: str = "opsat"
    kafka_replication_factor: int = Field(default=1, ge=1, le=16)  # for topics the worker creates
    # A crashed consumer's partitions move to the others after this long (broker minimum: 6 s).
    kafka_session_timeout_ms: int = Field(default=10_000, ge=6_000, le=300_000)
    kafka_request_timeout_ms: int = Field(default=10_000, ge=1_000)
    # Static group membership: give each worker replica a stable id (e.g. its pod name) and a restarted
    # worker takes its partitions back at once, with no rebalance and no wait for the session timeout.
    # Unset: dynamic membership (a clean stop hands partitions over at once; a crash waits the timeout).
    kafka_group_instance_id: str | None = None

    # HTTP
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    http_workers: int = Field(default=1, ge=1, le=64)  # uvicorn processes; on Kubernetes scale pods instead
    worker_port: int = Field(default=8001, ge=0, le=65535)  # worker's /healthz, /readyz and /metrics
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)

    # Auth: "dev" verifies HS256 tokens signed with auth_dev_key (minted by `opsat-token`);
    # "oidc" verifies RS256/ES256 tokens against the issuer's JWKS.
    auth_mode: Literal["dev", "oidc"] = "dev"
    auth_dev_key: SecretStr = SecretStr("opsat-dev-only-signing-key-never-use-in-production-0123456789abcdef")
    auth_issuer: str = "opsat-dev"
    auth_audience: str = "opsat"
    auth_jwks_url: str | None = None

    # Background work
    relay_batch_size: int = Field(default=2_000, ge=1, le=50_000)
    relay_poll_interval_s: float = Field(default=1.0, gt=0)
    relay_delivery_timeout_s: float = Field(default=15.0, gt=0)  # then the relay reports an outage and re-sends
    deadline_poll_interval_s: float = Field(default=1.0, gt=0)
    consumer_max_retries: int = Field(default=3, ge=0)
    read_your_writes_timeout_s: float = Field(default=2.0, ge=0)

    log_level: str = "INFO"
    log_json: bool = True

    def topic(self, service: str | None = None) -> str:
        return f"{self.topic_namespace}.{service or self.service_name}.events"


def merge_nested(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `override` laid over it: mappings present in both merge key by key, at any depth;
    any other value (lists included) in `override` replaces the base's. Neither argument is changed."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_nested(merged[key], value)
        else:
            merged[key] = value
    return merged
