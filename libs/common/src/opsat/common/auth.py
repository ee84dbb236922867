"""OAuth2 bearer JWTs -> `Actor` (id, organisation, roles), and route guards.

Claims: `sub` (user id), `org` (organisation), `roles` (list of opsat roles), optional `name`.
Dev mode verifies HS256 tokens signed with OPSAT_AUTH_DEV_KEY (mint them with `opsat-token`);
OIDC mode verifies the issuer's keys from its JWKS URL. Roles count as `Tenancy` says: staff and reader
roles only from the provider's organisations, service accounts only for the organisations configured.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from opsat.common.domain import Actor, Role, Tenancy
from opsat.common.settings import ServiceSettings


class Unauthenticated(Exception):
    pass


class NotAllowed(Exception):
    pass


# Verifying a token's signature and claims is a third of a stubbed command's CPU: a token verified once is
# trusted again until it expires, and at most this long, so a key the issuer withdrew stops working soon.
VERIFIED_TTL_S = 60.0
VERIFIED_MAX = 10_000


class Authenticator:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.tenancy = settings.tenancy()
        self._jwks = jwt.PyJWKClient(settings.auth_jwks_url, cache_keys=True) if (
            settings.auth_mode == "oidc" and settings.auth_jwks_url) else None
        self._verified: dict[str, tuple[float, Actor]] = {}  # token -> (trusted until, actor)

    async def authenticate(self, token: str) -> Actor:
        now = time.time()
        known = self._verified.get(token)
        if known is not None:
            if now < known[0]:
                return known[1]
            del self._verified[token]
        actor, expires = await self._verify(token)
        if len(self._verified) >= VERIFIED_MAX:
            self._verified.clear()
        self._verified[token] = (min(expires, now + VERIFIED_TTL_S), actor)
        return actor

    async def _verify(self, token: str) -> tuple[Actor, float]:
        try:
            if self.settings.auth_mode == "dev":
                assert self.settings.auth_dev_key is not None  # settings refuse dev mode without a key
                claims = jwt.decode(token, self.settings.auth_dev_key.get_secret_value(), algorithms=["HS256"],
                                    audience=self.settings.auth_audience, issuer=self.settings.auth_issuer,
                                    options={"require": ["sub", "exp"]})
            else:
                if self._jwks is None:
                    raise Unauthenticated("OIDC mode needs OPSAT_AUTH_JWKS_URL")
                key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                claims = jwt.decode(token, key.key, algorithms=["RS256", "ES256"],
                                    audience=self.settings.auth_audience, issuer=self.settings.auth_issuer,
                                    options={"require": ["sub", "exp"]})
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        lifetime = claims["exp"] - (claims.get("iat") if isinstance(claims.get("iat"), (int, float)) else time.time())
        if lifetime > self.settings.auth_max_token_lifetime_s:
            raise Unauthenticated(f"token lifetime exceeds {self.settings.auth_max_token_lifetime_s} s")
        return actor_from_claims(claims, self.tenancy), float(claims["exp"])


def actor_from_claims(claims: dict[str, Any], tenancy: Tenancy | None = None) -> Actor:
    """The actor a verified token describes; without `tenancy` no organisation is the provider's."""
    claimed = claims.get("roles") or []
    if isinstance(claimed, str):
        claimed = [claimed]
    if not isinstance(claimed, (list, tuple)):
        raise Unauthenticated("token claim 'roles' must be a list")
    roles = set()
    for name in claimed:
        try:
            roles.add(Role(name))
        except ValueError:
            continue  # roles of other applications in a shared identity provider
    org = claims.get("org")
    if not isinstance(org, str) or not org:
        raise Unauthenticated("token has no organisation claim 'org'")
    sub = claims.get("sub")
    if isinstance(sub, int) and not isinstance(sub, bool):
        sub = str(sub)
    if not isinstance(sub, str) or not sub.strip():
        raise Unauthenticated("token has no subject claim 'sub'")
    admitted, scope = (tenancy or Tenancy()).admit(org, sub, frozenset(roles))
    issuer = claims.get("iss") if isinstance(claims.get("iss"), str) else ""
    return Actor(id=sub, organisation=org, roles=admitted, name=claims.get("name"), issuer=issuer, scope=scope)


def mint_token(settings: ServiceSettings, *, sub: str, org: str, roles: Iterable[str], name: str | None = None,
               ttl_s: int = 3600) -> str:
    now = int(time.time())
    claims = {"sub": sub, "org": org, "roles": list(roles), "iss": settings.auth_issuer,
              "aud": settings.auth_audience, "iat": now, "exp": now + ttl_s}
    if name:
        claims["name"] = name
    if settings.auth_mode != "dev" or settings.auth_dev_key is None:
        raise RuntimeError("minting tokens needs OPSAT_AUTH_MODE=dev and OPSAT_AUTH_DEV_KEY (see .local/auth.env)")
    return jwt.encode(claims, settings.auth_dev_key.get_secret_value(), algorithm="HS256")


_bearer = HTTPBearer(auto_error=False, description="OAuth2 bearer JWT (dev mode: mint with `opsat-token`).")


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def current_actor(request: Request, credentials: Credentials) -> Actor:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("missing bearer token")
    return await request.app.state.authenticator.authenticate(credentials.credentials)


def require(*roles: Role) -> Callable[..., Any]:
    """A dependency admitting only actors holding one of `roles` (every route names its callers). It takes the
    bearer credentials itself rather than `current_actor`: FastAPI's cost per request grows with each level."""

    async def guard(request: Request, credentials: Credentials) -> Actor:
        actor = await current_actor(request, credentials)
        check_roles(actor, roles)
        return actor

    guard.__name__ = "require_" + "_or_".join(r.value for r in roles)
    guard.roles = roles  # type: ignore[attr-defined]  # read when input is refused: auth is judged first
    return guard


def check_roles(actor: Actor, roles: Iterable[Role]) -> None:
    roles = tuple(roles)
    if not actor.has(*roles):
        raise NotAllowed(f"requires one of the roles: {', '.join(r.value for r in roles)}")


async def judge_before_input(request: Request) -> Actor | None:
    """Raise what authentication or the route's role guard would answer, before an input error is reported:
    without a valid token a malformed request is a 401, with the wrong role a 403, never a 400 or 422.
    Returns the authenticated actor (None for a route that needs no token)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    guards, pending = [], [dependant]
    while pending:
        current = pending.pop()
        if current.call is current_actor or hasattr(current.call, "roles"):
            guards.append(current.call)
        pending.extend(current.dependencies)
    if not guards:
        return None
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("missing bearer token")
    actor = await request.app.state.authenticator.authenticate(token.strip())
    for guard in guards:
        if hasattr(guard, "roles"):
            check_roles(actor, guard.roles)
    return actor


def mint_token_cli() -> None:
    parser = argparse.ArgumentParser(description="Mint a dev-mode JWT (signed with OPSAT_AUTH_DEV_KEY).")
    parser.add_argument("--sub", required=True, help="user id")
    parser.add_argument("--org", required=True, help="organisation id")
    parser.add_argument("--roles", default="requester", help="comma-separated: " + ",".join(r.value for r in Role))
    parser.add_argument("--name")
    parser.add_argument("--ttl", type=int, default=8 * 3600, help="seconds")
    args = parser.parse_args()
    try:
        settings = ServiceSettings()
        token = mint_token(settings, sub=args.sub, org=args.org, roles=args.roles.split(","), name=args.name,
                           ttl_s=args.ttl)
    except (ValueError, RuntimeError) as exc:
        parser.exit(2, f"opsat-token: {exc}\n(for the local stack started by make run: . .local/auth.env)\n")
    print(token)
