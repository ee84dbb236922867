"""settings.ServiceSettings: OPSAT_* environment variables and topic naming."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from opsat.common.settings import ServiceSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.upper().startswith("OPSAT_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_defaults_without_environment():
    s = ServiceSettings()
    assert s.service_name == "opsat"
    assert s.environment == "dev"
    assert s.auth_mode == "oidc"  # secure by default: no self-minted token is accepted
    assert s.max_body_bytes == 256 * 1024
    assert s.topic_namespace == "opsat"


def test_opsat_env_vars_override(clean_env: pytest.MonkeyPatch):
    clean_env.setenv("OPSAT_SERVICE_NAME", "intake")
    clean_env.setenv("OPSAT_ENVIRONMENT", "prod")
    clean_env.setenv("OPSAT_DATABASE_URL", "postgresql+asyncpg://u@db:5432/intake")
    clean_env.setenv("OPSAT_DATABASE_POOL_SIZE", "25")
    clean_env.setenv("OPSAT_HTTP_PORT", "9000")
    clean_env.setenv("OPSAT_LOG_JSON", "false")
    clean_env.setenv("OPSAT_RELAY_POLL_INTERVAL_S", "0.25")
    clean_env.setenv("OPSAT_AUTH_DEV_KEY", "from-the-environment-0123456789abcdef")
    clean_env.setenv("OPSAT_AUTH_JWKS_URL", "https://idp.example/jwks")
    s = ServiceSettings()
    assert s.service_name == "intake"
    assert s.environment == "prod"
    assert s.database_url == "postgresql+asyncpg://u@db:5432/intake"
    assert s.database_pool_size == 25
    assert s.http_port == 9000
    assert s.log_json is False
    assert s.relay_poll_interval_s == 0.25
    assert s.auth_dev_key.get_secret_value() == "from-the-environment-0123456789abcdef"
    assert "from-the-environment" not in repr(s)  # the key stays secret
    assert s.auth_jwks_url == "https://idp.example/jwks"


def test_env_var_names_are_case_insensitive(clean_env: pytest.MonkeyPatch):
    clean_env.setenv("opsat_topic_namespace", "lower")
    assert ServiceSettings().topic_namespace == "lower"


def test_unprefixed_variables_are_ignored(clean_env: pytest.MonkeyPatch):
    clean_env.setenv("SERVICE_NAME", "nope")
    clean_env.setenv("DATABASE_URL", "postgresql://elsewhere")
    s = ServiceSettings()
    assert s.service_name == "opsat"
    assert s.database_url != "postgresql://elsewhere"


def test_explicit_arguments_beat_the_environment(clean_env: pytest.MonkeyPatch):
    clean_env.setenv("OPSAT_SERVICE_NAME", "from-env")
    assert ServiceSettings(service_name="explicit").service_name == "explicit"


def test_unknown_opsat_variables_are_ignored(clean_env: pytest.MonkeyPatch):
    clean_env.setenv("OPSAT_SOMETHING_ELSE", "x")
    assert not hasattr(ServiceSettings(), "something_else")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OPSAT_ENVIRONMENT", "staging"),
        ("OPSAT_AUTH_MODE", "basic"),
        ("OPSAT_HTTP_PORT", "70000"),
        ("OPSAT_HTTP_WORKERS", "-1"),
        ("OPSAT_DATABASE_POOL_SIZE", "0"),
        ("OPSAT_MAX_BODY_BYTES", "100"),
        ("OPSAT_RELAY_POLL_INTERVAL_S", "0"),
        ("OPSAT_KAFKA_REQUEST_TIMEOUT_MS", "10"),
        ("OPSAT_RELAY_BATCH_SIZE", "many"),
        ("OPSAT_REBUILD_LANES", "0"),
    ],
)
def test_invalid_values_are_refused(clean_env: pytest.MonkeyPatch, name: str, value: str):
    clean_env.setenv(name, value)
    with pytest.raises(ValidationError):
        ServiceSettings()


def test_topic_uses_namespace_and_own_service_name():
    assert ServiceSettings(service_name="intake").topic() == "opsat.intake.events"
    assert ServiceSettings(service_name="intake", topic_namespace="t1a2").topic() == "t1a2.intake.events"


def test_topic_of_another_service():
    s = ServiceSettings(service_name="intake", topic_namespace="ns")
    assert s.topic("billing") == "ns.billing.events"


def test_topic_follows_the_environment(clean_env: pytest.MonkeyPatch):
    clean_env.setenv("OPSAT_TOPIC_NAMESPACE", "staging")
    clean_env.setenv("OPSAT_SERVICE_NAME", "intake")
    assert ServiceSettings().topic() == "staging.intake.events"


def test_a_subclass_adds_fields_read_from_the_environment(clean_env: pytest.MonkeyPatch):
    class WidgetSettings(ServiceSettings):
        widget_limit: int = 5

    clean_env.setenv("OPSAT_WIDGET_LIMIT", "9")
    clean_env.setenv("OPSAT_SERVICE_NAME", "widgets")
    s = WidgetSettings()
    assert s.widget_limit == 9
    assert s.topic() == "opsat.widgets.events"


@pytest.mark.parametrize(("cpu_max", "expected"), [
    ("max 100000\n", None), ("50000 100000\n", 1), ("100000 100000\n", 1), ("150000 100000\n", 2),
    ("6400000 100000\n", None), (None, None)])
def test_http_workers_zero_means_one_per_usable_core(tmp_path, cpu_max: str | None, expected: int | None):
    from opsat.common.cli import usable_cores

    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max)
    cores = len(os.sched_getaffinity(0))
    assert usable_cores(path) == (min(expected, cores) if expected else cores)


def test_a_rebuild_runs_in_the_lanes_the_environment_gives(clean_env: pytest.MonkeyPatch):
    from opsat.intake.service import SERVICE
    from opsat.intake.settings import IntakeSettings

    assert SERVICE.runner_config(IntakeSettings(), "requests").rebuild_lanes == 2
    clean_env.setenv("OPSAT_REBUILD_LANES", "4")
    assert SERVICE.runner_config(IntakeSettings(), "requests").rebuild_lanes == 4
