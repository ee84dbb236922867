"""Configuration from environment variables `OPSAT_*` (pydantic-settings).

Every service uses `ServiceSettings`; a service adds its own fields by subclassing.
Nothing is read at import time: `main.create_app(settings)` and `worker.run(settings)` take an instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from opsat.common.domain import Tenancy

# Signing keys that were ever published (in source or docs): a token signed with one proves nothing.
PUBLISHED_DEV_KEYS = frozenset({"opsat-dev-only-signing-key-never-use-in-production-0123456789abcdef"})
MIN_DEV_KEY_BYTES = 32


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPSAT_", extra="ignore")

    service_name: str = "opsat"
    environment: Literal["dev", "test", "prod"] = "dev"

    # PostgreSQL: one database per service (SQLAlchemy async URL).
    database_url: str = "postgresql+asyncpg://opsat@127.0.0.1:5432/opsat"
    # About the requests in flight per process (the bench keeps 48 in flight against one process).
    database_pool_size: int = Field(default=32, ge=1, le=200)
    # A request waiting this long for a pooled connection is answered 503 with Retry-After.
    database_pool_timeout_s: float = Field(default=10.0, gt=0, le=300)

    # Kafka: topics are named f"{topic_namespace}.{service}.events".
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_namespace: str = "opsat"
    kafka_replication_factor: int = Field(default=1, ge=1, le=16)  # for topics the worker creates
    # A crashed consumer's partitions move to the others after this long (broker minimum: 6 s).
    kafka_session_timeout_ms: int = Field(default=10_000, ge=6_000, le=300_000)
    # A consumer sees a topic created after it started (another service started later) within this.
    kafka_metadata_max_age_ms: int = Field(default=30_000, ge=100, le=300_000)
    kafka_request_timeout_ms: int = Field(default=10_000, ge=1_000)
    # Static group membership: give each worker replica a stable id (e.g. its pod name) and a restarted
    # worker takes its partitions back at once, with no rebalance and no wait for the session timeout.
    # Unset: dynamic membership (a clean stop hands partitions over at once; a crash waits the timeout).
    kafka_group_instance_id: str | None = None

    # HTTP
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    # Appends arriving together share one statement and commit (EventStore group commit); off: one each.
    event_store_group_commit: bool = True
    # uvicorn processes; 0: one per usable core (the container's CPU quota, else the cores this process may use).
    # `make run`, the image and the chart set 0; tests and embedding code get one process unless they ask.
    http_workers: int = Field(default=1, ge=0, le=64)
    # Longer than a load balancer's idle timeout (60 s on common ones), so the balancer closes first.
    http_keepalive_timeout_s: int = Field(default=75, ge=1, le=3600)
    api_metrics: bool = False  # /metrics on the API port too (it is always on the worker's port)
    worker_port: int = Field(default=8001, ge=0, le=65535)  # worker's /healthz, /readyz and /metrics
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)

    # Auth: "oidc" (the default) verifies RS256/ES256 tokens against the issuer's JWKS; without a JWKS URL
    # every token is refused. "dev" verifies HS256 tokens signed with auth_dev_key (minted by `opsat-token`),
    # only in the dev and test environments and only with a key of at least 32 bytes (`make run` makes one).
    auth_mode: Literal["dev", "oidc"] = "oidc"
    auth_dev_key: SecretStr | None = None
    auth_issuer: str = "opsat-dev"
    auth_audience: str = "opsat"
    auth_jwks_url: str | None = None
    auth_max_token_lifetime_s: int = Field(default=12 * 3600, ge=60)  # exp - iat (or now), refused beyond

    # Tenancy (README "Tenancy"): the service provider's organisations hold the staff and reader roles;
    # a service account (subject of a provider organisation) acts for the organisations listed for it ("*": all).
    provider_organisations: list[str] = []
    service_accounts: dict[str, list[str]] = {}

    # Idempotency-Key results are kept this long; a worker loop deletes older ones.
    idempotency_retention_s: int = Field(default=24 * 3600, ge=60)
    # Read-your-writes waits (`min_version`): at most this many at once per process, and per caller.
    max_concurrent_waits: int = Field(default=64, ge=0)
    max_waits_per_caller: int = Field(default=2, ge=0)

    # Background work
    relay_batch_size: int = Field(default=2_000, ge=1, le=50_000)
    relay_poll_interval_s: float = Field(default=1.0, gt=0)
    relay_delivery_timeout_s: float = Field(default=15.0, gt=0)  # then the relay reports an outage and re-sends
    # Woken by a commit, the relay waits this long for more before publishing (fewer, fuller produce requests).
    relay_linger_s: float = Field(default=0.005, ge=0, le=1)
    deadline_poll_interval_s: float = Field(default=1.0, gt=0)
    consumer_max_retries: int = Field(default=3, ge=0)
    # Records a live consumer applies per transaction at most (fewer: shorter transactions, more commits).
    consumer_max_records: int = Field(default=1_000, ge=1, le=50_000)
    # A live consumer commits its Kafka offsets at most this often (and on a rebalance or stop); 0: after every
    # poll. What a crash redelivers is deduplicated, so this bounds only redelivered work, never correctness.
    consumer_commit_interval_s: float = Field(default=1.0, ge=0, le=60)
    # A live consumer's fetch waits up to this long for this many bytes (fewer, fuller polls at low rates).
    consumer_fetch_min_bytes: int = Field(default=1 << 20, ge=1)
    consumer_fetch_max_wait_ms: int = Field(default=25, ge=0, le=10_000)
    # Once a poll found nothing: the next fetch waits up to this long, answered at the first record.
    consumer_idle_fetch_max_wait_ms: int = Field(default=500, ge=0, le=10_000)
    # A rebuild loads a projection whose rows each belong to the event's stream in this many lanes, each a process of
    # its own over a share of the partitions: about the cores the rebuild may use (a lane past the partitions idles).
    rebuild_lanes: int = Field(default=2, ge=1, le=64)
    # How often the worker measures its consumer groups' lag from Kafka (opsat_consumer_group_lag).
    group_lag_interval_s: float = Field(default=15.0, gt=0)
    read_your_writes_timeout_s: float = Field(default=2.0, ge=0)

    # OpenTelemetry traces (README "Operating"): off unless an exporter is named.
    tracing_exporter: Literal["none", "otlp"] = "none"
    tracing_otlp_endpoint: str | None = None  # e.g. http://otel-collector:4318/v1/traces; default: the SDK's
    tracing_sample_ratio: float = Field(default=1.0, ge=0, le=1)  # of new traces; a sampled parent is followed

    log_level: str = "INFO"
    log_json: bool = True

    @model_validator(mode="after")
    def _secure_auth(self) -> ServiceSettings:
        if self.auth_mode != "dev":
            return self
        if self.environment not in ("dev", "test"):
            raise ValueError(f"OPSAT_AUTH_MODE=dev is refused in the {self.environment} environment; use oidc")
        key = self.auth_dev_key.get_secret_value() if self.auth_dev_key else ""
        if not key:
            raise ValueError("OPSAT_AUTH_MODE=dev needs OPSAT_AUTH_DEV_KEY (make run writes one into .local/)")
        if key in PUBLISHED_DEV_KEYS:
            raise ValueError("OPSAT_AUTH_DEV_KEY is a published key; generate one (openssl rand -hex 32)")
        if len(key.encode()) < MIN_DEV_KEY_BYTES:
            raise ValueError(f"OPSAT_AUTH_DEV_KEY must be at least {MIN_DEV_KEY_BYTES} bytes")
        return self

    def tenancy(self) -> Tenancy:
        return Tenancy(provider_organisations=frozenset(self.provider_organisations),
                       service_accounts={sub: frozenset(orgs) for sub, orgs in self.service_accounts.items()})

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
