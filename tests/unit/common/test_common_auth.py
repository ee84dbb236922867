"""auth: dev-mode JWTs -> Actor, and the `require(...)` route guard (in-process, no network)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import jwt
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from opsat.common.auth import Authenticator, Unauthenticated, actor_from_claims, mint_token, require
from opsat.common.domain import Actor, Role, Tenancy
from opsat.common.errors import PROBLEM_JSON, install_error_handlers
from opsat.common.settings import ServiceSettings

KEY = "unit-test-signing-key-0123456789abcdef"


@pytest.fixture
def settings() -> ServiceSettings:
    # acme plays the provider here, so that its staff roles count (see test_secure_defaults for tenancy)
    return ServiceSettings(auth_mode="dev", auth_dev_key=SecretStr(KEY), auth_issuer="opsat-test",
                           auth_audience="opsat", service_name="test", provider_organisations=["acme"])


def raw_token(settings: ServiceSettings, *, key: str = KEY, algorithm: str = "HS256", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"sub": "u1", "org": "acme", "roles": ["agent"], "iss": settings.auth_issuer,
              "aud": settings.auth_audience, "iat": now, "exp": now + 600, **overrides}
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm=algorithm)


# --- token -> actor ----------------------------------------------------------------------


async def test_minted_token_round_trips_to_the_actor(settings: ServiceSettings):
    token = mint_token(settings, sub="u-7", org="acme", roles=["agent", "team_lead"], name="Ada")
    actor = await Authenticator(settings).authenticate(token)
    assert actor == Actor(id="u-7", organisation="acme", roles=frozenset({Role.agent, Role.team_lead}), name="Ada",
                          issuer="opsat-test")


async def test_unknown_roles_are_ignored(settings: ServiceSettings):
    token = mint_token(settings, sub="u1", org="acme", roles=["requester", "sharepoint_admin", "Admin", ""])
    actor = await Authenticator(settings).authenticate(token)
    assert actor.roles == frozenset({Role.requester})
    assert actor.name is None


async def test_a_verified_token_is_trusted_again_only_until_it_expires_or_a_minute_passes(
        settings: ServiceSettings, monkeypatch: pytest.MonkeyPatch):
    from opsat.common import auth

    authenticator = Authenticator(settings)
    verified: list[str] = []
    verify = authenticator._verify

    async def counting(token: str) -> Any:
        verified.append(token)
        return await verify(token)

    monkeypatch.setattr(authenticator, "_verify", counting)
    now = time.time()
    short = raw_token(settings, exp=int(now) + 30)
    long = raw_token(settings, sub="u2", exp=int(now) + 3000)
    for _ in range(3):
        assert (await authenticator.authenticate(short)).id == "u1"
        assert (await authenticator.authenticate(long)).id == "u2"
    assert verified == [short, long]
    monkeypatch.setattr(auth.time, "time", lambda: now + 31)  # past the short one's exp, within the minute
    await authenticator.authenticate(short)
    await authenticator.authenticate(long)
    assert verified == [short, long, short]
    monkeypatch.setattr(auth.time, "time", lambda: now + auth.VERIFIED_TTL_S + 1)
    await authenticator.authenticate(long)
    assert verified == [short, long, short, long]


async def test_a_refused_token_is_refused_every_time(settings: ServiceSettings):
    authenticator = Authenticator(settings)
    forged = raw_token(settings, key="another-key-0123456789abcdef-0123456789")
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            await authenticator.authenticate(forged)


async def test_a_token_without_roles_gives_no_roles(settings: ServiceSettings):
    actor = await Authenticator(settings).authenticate(raw_token(settings, roles=None))
    assert actor.roles == frozenset()
    actor = await Authenticator(settings).authenticate(raw_token(settings, roles=[]))
    assert actor.roles == frozenset()


async def test_minted_claims_carry_issuer_audience_and_ttl(settings: ServiceSettings):
    token = mint_token(settings, sub="u1", org="acme", roles=["agent"], ttl_s=120)
    claims = jwt.decode(token, KEY, algorithms=["HS256"], audience="opsat", issuer="opsat-test")
    assert claims["exp"] - claims["iat"] == 120
    assert claims["roles"] == ["agent"]
    assert "name" not in claims


@pytest.mark.parametrize(
    "token_of",
    [
        pytest.param(lambda s: mint_token(s, sub="u1", org="acme", roles=["agent"], ttl_s=-30), id="expired"),
        pytest.param(lambda s: raw_token(s, aud="other-app"), id="wrong-audience"),
        pytest.param(lambda s: raw_token(s, aud=None), id="no-audience"),
        pytest.param(lambda s: raw_token(s, iss="someone-else"), id="wrong-issuer"),
        pytest.param(lambda s: raw_token(s, iss=None), id="no-issuer"),
        pytest.param(lambda s: raw_token(s, key="a-different-key-0123456789abcdef0"), id="wrong-key"),
        pytest.param(lambda s: raw_token(s, org=None), id="missing-org"),
        pytest.param(lambda s: raw_token(s, org=""), id="empty-org"),
        pytest.param(lambda s: raw_token(s, org=["acme"]), id="org-not-a-string"),
        pytest.param(lambda s: raw_token(s, sub=None), id="missing-sub"),
        pytest.param(lambda s: raw_token(s, exp=None), id="missing-exp"),
        pytest.param(lambda s: raw_token(s, algorithm="none", key=""), id="alg-none"),
        pytest.param(lambda s: raw_token(s, algorithm="HS512"), id="other-algorithm"),
        pytest.param(lambda s: "not-a-jwt", id="garbage"),
        pytest.param(lambda s: "", id="empty"),
        pytest.param(lambda s: mint_token(s, sub="u1", org="acme", roles=["agent"])[:-4] + "AAAA", id="tampered"),
    ],
)
async def test_bad_tokens_are_unauthenticated(settings: ServiceSettings, token_of):
    token = token_of(settings)
    with pytest.raises(Unauthenticated):
        await Authenticator(settings).authenticate(token)


async def test_a_token_signed_for_one_key_fails_under_another(settings: ServiceSettings):
    token = mint_token(settings, sub="u1", org="acme", roles=["agent"])
    other = settings.model_copy(update={"auth_dev_key": SecretStr("another-key-0123456789abcdef0123")})
    with pytest.raises(Unauthenticated, match="invalid token"):
        await Authenticator(other).authenticate(token)


async def test_oidc_mode_without_jwks_url_is_unauthenticated(settings: ServiceSettings):
    oidc = settings.model_copy(update={"auth_mode": "oidc", "auth_jwks_url": None})
    with pytest.raises(Unauthenticated, match="JWKS"):
        await Authenticator(oidc).authenticate(mint_token(settings, sub="u1", org="acme", roles=[]))


def test_a_string_roles_claim_grants_no_other_role():
    # a single-string claim may be read as that one role or as none, never as anything else
    assert actor_from_claims({"sub": "u1", "org": "acme", "roles": "admin"}).roles <= {Role.admin}
    assert actor_from_claims({"sub": "u1", "org": "acme", "roles": "x"}).roles == frozenset()


@pytest.mark.parametrize("roles", [5, True])
def test_a_non_iterable_roles_claim_is_unauthenticated(roles: Any):
    with pytest.raises(Unauthenticated):
        actor_from_claims({"sub": "u1", "org": "acme", "roles": roles})


def test_actor_from_claims_stringifies_sub():
    actor = actor_from_claims({"sub": 42, "org": "acme", "roles": ["auditor"]},
                              Tenancy(provider_organisations=frozenset({"acme"})))
    assert actor.id == "42"
    assert actor.roles == frozenset({Role.auditor})


# --- require(...) guard ------------------------------------------------------------------


def make_app(settings: ServiceSettings) -> FastAPI:
    app = FastAPI()
    app.state.authenticator = Authenticator(settings)
    install_error_handlers(app)

    @app.get("/agents-only")
    async def agents_only(actor: Annotated[Actor, Depends(require(Role.agent, Role.team_lead))]) -> dict:
        return {"id": actor.id, "org": actor.organisation, "roles": sorted(r.value for r in actor.roles)}

    return app


@pytest.fixture
def client(settings: ServiceSettings) -> TestClient:
    return TestClient(make_app(settings), raise_server_exceptions=False)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_guard_without_token_is_401_with_www_authenticate(client: TestClient):
    r = client.get("/agents-only")
    assert r.status_code == 401
    assert r.headers["content-type"] == PROBLEM_JSON
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["type"] == "/problems/unauthenticated"


@pytest.mark.parametrize("header", ["Basic dTE6cHc=", "Bearer", "Token abc", ""])
def test_guard_with_a_non_bearer_authorization_is_401(client: TestClient, header: str):
    r = client.get("/agents-only", headers={"Authorization": header})
    assert r.status_code == 401
    assert "www-authenticate" in r.headers


def test_guard_with_an_invalid_token_is_401(client: TestClient, settings: ServiceSettings):
    r = client.get("/agents-only", headers=bearer(raw_token(settings, aud="other-app")))
    assert r.status_code == 401
    assert r.headers["content-type"] == PROBLEM_JSON
    assert "www-authenticate" in r.headers


def test_guard_with_the_wrong_role_is_403(client: TestClient, settings: ServiceSettings):
    r = client.get("/agents-only", headers=bearer(mint_token(settings, sub="u1", org="acme", roles=["requester"])))
    assert r.status_code == 403
    assert r.headers["content-type"] == PROBLEM_JSON
    body = r.json()
    assert body["type"] == "/problems/forbidden"
    assert "agent" in body["detail"] and "team_lead" in body["detail"]


def test_guard_with_only_unknown_roles_is_403(client: TestClient, settings: ServiceSettings):
    r = client.get("/agents-only", headers=bearer(mint_token(settings, sub="u1", org="acme", roles=["Agent"])))
    assert r.status_code == 403


@pytest.mark.parametrize("role", ["agent", "team_lead"])
def test_guard_with_one_of_the_roles_is_200(client: TestClient, settings: ServiceSettings, role: str):
    token = mint_token(settings, sub="u1", org="acme", roles=[role, "requester"])
    r = client.get("/agents-only", headers=bearer(token))
    assert r.status_code == 200
    assert r.json() == {"id": "u1", "org": "acme", "roles": sorted([role, "requester"])}


def test_bearer_scheme_is_case_insensitive(client: TestClient, settings: ServiceSettings):
    token = mint_token(settings, sub="u1", org="acme", roles=["agent"])
    assert client.get("/agents-only", headers={"Authorization": f"bearer {token}"}).status_code == 200


def test_guard_names_its_roles():
    assert require(Role.agent, Role.manager).__name__ == "require_agent_or_manager"
