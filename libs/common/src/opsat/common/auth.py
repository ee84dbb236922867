"""OAuth2 bearer JWTs -> `Actor` (id, organisation, roles), and route guards.

Claims: `sub` (user id), `org` (organisation), `roles` (list of opsat roles), optional `name`.
Dev mode verifies HS256 tokens signed with OPSAT_AUTH_DEV_KEY (mint them with `opsat-token`);
OIDC mode verifies the issuer's keys from its JWKS URL.
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

from opsat.common.domain import Actor, Role
from opsat.common.settings import ServiceSettings


class Unauthenticated(Exception):
    pass


class NotAllowed(Exception):
    pass


class Authenticator:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self._jwks = jwt.PyJWKClient(settings.auth_jwks_url, cache_keys=True) if (
            settings.auth_mode == "oidc" and settings.auth_jwks_url) else None

    async def authenticate(self, token: str) -> Actor:
        try:
            if self.settings.auth_mode == "dev":
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
        return actor_from_claims(claims)


def actor_from_claims(claims: dict[str, Any]) -> Actor:
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
    return Actor(id=str(claims["sub"]), organisation=org, roles=frozenset(roles), name=claims.get("name"))


def mint_token(settings: ServiceSettings, *, sub: str, org: str, roles: Iterable[str], name: str | None = None,
               ttl_s: int = 3600) -> str:
    now = int(time.time())
    claims = {"sub": sub, "org": org, "roles": list(roles), "iss": settings.auth_issuer,
              "aud": settings.auth_audience, "iat": now, "exp": now + ttl_s}
    if name:
        claims["name"] = name
    return jwt.encode(claims, settings.auth_dev_key.get_secret_value(), algorithm="HS256")


_bearer = HTTPBearer(auto_error=False, description="OAuth2 bearer JWT (dev mode: mint with `opsat-token`).")


async def current_actor(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Actor:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("missing bearer token")
    return await request.app.state.authenticator.authenticate(credentials.credentials)


def require(*roles: Role) -> Callable[..., Any]:
    """A dependency admitting only actors holding one of `roles` (every route names its callers)."""

    async def guard(actor: Annotated[Actor, Depends(current_actor)]) -> Actor:
        if not actor.has(*roles):
            raise NotAllowed(f"requires one of the roles: {', '.join(r.value for r in roles)}")
        return actor

    guard.__name__ = "require_" + "_or_".join(r.value for r in roles)
    return guard


def mint_token_cli() -> None:
    parser = argparse.ArgumentParser(description="Mint a dev-mode JWT (signed with OPSAT_AUTH_DEV_KEY).")
    parser.add_argument("--sub", required=True, help="user id")
    parser.add_argument("--org", required=True, help="organisation id")
    parser.add_argument("--roles", default="requester", help="comma-separated: " + ",".join(r.value for r in Role))
    parser.add_argument("--name")
    parser.add_argument("--ttl", type=int, default=8 * 3600, help="seconds")
    args = parser.parse_args()
    print(mint_token(ServiceSettings(), sub=args.sub, org=args.org, roles=args.roles.split(","), name=args.name,
                     ttl_s=args.ttl))
