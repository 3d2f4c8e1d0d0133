"""Bearer tokens: who may act, for which agents.

Tokens live in YAML only as SHA-256 hex digests. A token with ``role: admin``
may do everything; a token with ``agents:`` (globs) may hold, settle,
release, read and watch only for those agents. Without an ``auth`` section
every caller is trusted (budgetd then listens only on loopback unless
``server.allow_unauthenticated`` says otherwise).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from fnmatch import fnmatchcase

from .config.schema import AuthConfig, Config, TokenConfig


class Unauthenticated(Exception):
    pass


class PermissionDenied(Exception):
    pass


def sha256_hex(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def identify(auth: AuthConfig | None, metadata) -> TokenConfig | None:
    """The token's entry, or None when auth is off. Compared in constant time."""
    if auth is None:
        return None
    header = next((v for k, v in (metadata or ()) if k == "authorization"), None)
    if not header or not header.startswith("Bearer "):
        raise Unauthenticated("a bearer token is required (authorization: Bearer <token>)")
    digest = sha256_hex(header[len("Bearer "):].strip())
    found = None
    for entry in auth.tokens:  # every entry is compared: no early exit on a match
        if hmac.compare_digest(digest, entry.sha256.lower()):
            found = entry
    if found is None:
        raise Unauthenticated("unknown token")
    return found


def may_act_for(who: TokenConfig, agent_id: str) -> bool:
    """A token scoped by ``agents:`` globs covers this agent (admin: every one)."""
    return who.role == "admin" or any(fnmatchcase(agent_id, pattern) for pattern in who.agents)


def require(who: TokenConfig | None, *, agent_id: str | None = None, admin: bool = False) -> None:
    if who is None or who.role == "admin":
        return
    if admin:
        raise PermissionDenied(f"token {who.name!r} is not an admin token")
    if agent_id is None or not may_act_for(who, agent_id):
        raise PermissionDenied(f"token {who.name!r} may not act for agent {agent_id!r}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def may_listen(config: Config, listen: str) -> bool:
    """Whether ``config`` lets a port of budgetd (gRPC, metrics, any added
    later) listen on ``listen`` (HOST:PORT): off loopback only with an auth
    section, or when the config says it knowingly runs open."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    return config.auth is not None or config.server.allow_unauthenticated or is_loopback(host)
