"""Secure defaults of settings and auth: an image started with only database and Kafka settings, or in prod,
accepts no self-minted token; tokens must name a subject and live no longer than the maximum; staff roles
count only from the provider's organisations (README "Tenancy"). Pure: no network, no database."""

from __future__ import annotations

import os
import time
from typing import Any
from unittest import mock

import jwt
import pytest
from pydantic import SecretStr, ValidationError

from opsat.common.auth import Authenticator, Unauthenticated, actor_from_claims
from opsat.common.domain import Role
from opsat.common.settings import ServiceSettings

# The signing key that earlier versions shipped as the default: published, so never acceptable.
PUBLISHED_KEY = "opsat-dev-only-signing-key-never-use-in-production-0123456789abcdef"
STRONG_KEY = "k" * 32
ALL_ROLES = [r.value for r in Role]


def settings_from_env(**env: str) -> ServiceSettings:
    """Settings exactly as a process would build them from this environment and nothing else."""
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("OPSAT_")} | env
    with mock.patch.dict(os.environ, clean, clear=True):
        return ServiceSettings()


def forged(key: str = PUBLISHED_KEY, **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": "attacker", "org": "ops", "roles": ALL_ROLES, "iss": "opsat-dev", "aud": "opsat",
               "iat": now, "exp": now + 600, **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm="HS256")


@pytest.mark.parametrize("env", [{"OPSAT_ENVIRONMENT": "prod"}, {}], ids=["prod", "nothing configured"])
async def test_a_token_signed_with_the_published_key_is_refused(env: dict[str, str]):
    settings = settings_from_env(OPSAT_DATABASE_URL="postgresql+asyncpg://u@db/x", **env)
    with pytest.raises(Unauthenticated):
        await Authenticator(settings).authenticate(forged())
    assert settings.auth_mode == "oidc"


@pytest.mark.parametrize("environment", ["prod"])
def test_dev_mode_is_refused_outside_dev_and_test(environment: str):
    with pytest.raises(ValidationError, match="dev"):
        settings_from_env(OPSAT_ENVIRONMENT=environment, OPSAT_AUTH_MODE="dev", OPSAT_AUTH_DEV_KEY=STRONG_KEY)


@pytest.mark.parametrize(("key", "reason"), [(None, "OPSAT_AUTH_DEV_KEY"), (PUBLISHED_KEY, "published"),
                                             ("short-key-31-bytes-long-0123456", "32 bytes")],
                         ids=["no key", "the published key", "31 bytes"])
def test_dev_mode_refuses_a_missing_published_or_short_key(key: str | None, reason: str):
    env = {"OPSAT_ENVIRONMENT": "dev", "OPSAT_AUTH_MODE": "dev"} | ({"OPSAT_AUTH_DEV_KEY": key} if key else {})
    with pytest.raises(ValidationError, match=reason):
        settings_from_env(**env)


@pytest.mark.parametrize("environment", ["dev", "test"])
def test_dev_mode_with_a_strong_key_in_dev_or_test(environment: str):
    s = settings_from_env(OPSAT_ENVIRONMENT=environment, OPSAT_AUTH_MODE="dev", OPSAT_AUTH_DEV_KEY=STRONG_KEY)
    assert s.auth_mode == "dev" and s.auth_dev_key is not None


def dev_settings(**changes: Any) -> ServiceSettings:
    values = {"environment": "test", "auth_mode": "dev", "auth_dev_key": SecretStr(STRONG_KEY),
              "provider_organisations": ["ops"], **changes}
    return ServiceSettings(**values)


async def test_a_token_living_longer_than_the_maximum_is_refused():
    settings = dev_settings(auth_max_token_lifetime_s=12 * 3600)
    now = int(time.time())
    with pytest.raises(Unauthenticated, match="lifetime"):
        await Authenticator(settings).authenticate(forged(STRONG_KEY, iat=now, exp=now + 12 * 3600 + 60))
    with pytest.raises(Unauthenticated, match="lifetime"):  # no iat: counted from now
        await Authenticator(settings).authenticate(forged(STRONG_KEY, iat=None, exp=now + 30 * 24 * 3600))
    actor = await Authenticator(settings).authenticate(forged(STRONG_KEY, iat=now, exp=now + 12 * 3600))
    assert actor.id == "attacker"


@pytest.mark.parametrize("sub", ["", "   ", None, 7.5, ["a"]])
async def test_a_token_without_a_usable_subject_is_refused(sub: Any):
    token = forged(STRONG_KEY, sub=sub) if sub is not None else jwt.encode(
        {"org": "ops", "iss": "opsat-dev", "aud": "opsat", "exp": int(time.time()) + 60}, STRONG_KEY)
    with pytest.raises(Unauthenticated):
        await Authenticator(dev_settings()).authenticate(token)


# --- tenancy: whose roles count --------------------------------------------------------------------------


def claims(org: str, *roles: str, sub: str = "u1") -> dict[str, Any]:
    return {"sub": sub, "org": org, "roles": list(roles), "iss": "idp"}


def test_staff_and_reader_roles_count_only_from_provider_organisations():
    tenancy = dev_settings(provider_organisations=["ops", "ops-cn"]).tenancy()
    customer = actor_from_claims(claims("globex", *ALL_ROLES), tenancy)
    assert customer.roles == frozenset({Role.requester})
    assert not customer.is_staff and not customer.reads_everything
    assert customer.sees("globex") and not customer.sees("acme")
    staff = actor_from_claims(claims("ops-cn", "agent", "auditor"), tenancy)
    assert staff.roles == frozenset({Role.agent, Role.auditor})
    assert staff.sees("acme") and staff.sees("globex")


def test_service_accounts_act_only_for_the_organisations_they_are_configured_for():
    tenancy = dev_settings(service_accounts={"monitoring": ["acme"], "erp": ["*"]}).tenancy()
    monitoring = actor_from_claims(claims("ops", "service", sub="monitoring"), tenancy)
    assert monitoring.roles == frozenset({Role.service})
    assert monitoring.sees("acme") and not monitoring.sees("globex")
    assert not monitoring.reads_everything
    assert actor_from_claims(claims("ops", "service", sub="erp"), tenancy).sees("globex")
    # not configured, or configured but issued to a customer organisation: the role counts for nothing
    assert actor_from_claims(claims("ops", "service", sub="script"), tenancy).roles == frozenset()
    assert actor_from_claims(claims("acme", "service", sub="monitoring"), tenancy).roles == frozenset()


def test_the_actor_carries_the_issuer():
    actor = actor_from_claims(claims("acme", "requester"), dev_settings().tenancy())
    assert actor.issuer == "idp"
