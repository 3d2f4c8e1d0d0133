"""Who may look at the dashboard and act from it (docs/dashboard.md).

The gRPC rule, carried to HTTP: without an ``auth`` section the dashboard
listens on loopback only and whoever reaches it may look and act; with one,
every request needs an admin token, given once at sign-in (then a session
cookie) or as a bearer token on each request. Sessions are checked against
the config in force at every request, so a reload that revokes a token ends
its sessions.

Actions need a CSRF token when they ride on a cookie (the browser sends
cookies by itself, a bearer token it does not): each session, the
anonymous one of a dashboard without auth included, has its own.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..auth import Unauthenticated, identify
from ..config.schema import AuthConfig

COOKIE = "budgetd_session"
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 10_000  # the oldest go first: sign-ins must not grow memory without bound
MAX_TOKEN_CHARS = 4096
NO_AUTH = "loopback (no auth)"


class Refused(Exception):
    """The request may not go on: (HTTP status, why)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Session:
    id: str
    who: str  # the token's name, or NO_AUTH
    token_sha256: str  # "" without auth
    csrf: str
    expires: float  # time.monotonic()


@dataclass(frozen=True)
class Caller:
    """Who a request comes from, as far as the dashboard is concerned."""

    who: str
    session: Session | None  # None: a bearer token (no cookie, no CSRF needed)


class Access:
    def __init__(self, auth_in_force: Callable[[], AuthConfig | None], clock: Callable[[], float] = time.monotonic):
        self._auth = auth_in_force
        self._clock = clock
        self._sessions: dict[str, Session] = {}

    @property
    def auth_on(self) -> bool:
        return self._auth() is not None

    # -- sessions -------------------------------------------------------------------------
    def sign_in(self, token: object) -> Session:
        auth = self._auth()
        if auth is None:
            raise Refused(400, "this dashboard has no auth section: there is nothing to sign in to")
        if not isinstance(token, str) or not token.strip() or len(token) > MAX_TOKEN_CHARS:
            raise Refused(400, f"token: give the admin token as a string of 1-{MAX_TOKEN_CHARS} characters")
        name, digest = self._admin(auth, token.strip())
        return self._new_session(name, digest)

    def anonymous(self) -> Session:
        """The session of a dashboard without auth: it carries the CSRF token."""
        return self._new_session(NO_AUTH, "")

    def sign_out(self, session: Session) -> None:
        self._sessions.pop(session.id, None)

    def _new_session(self, who: str, digest: str) -> Session:
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions.values(), key=lambda s: s.expires)
            del self._sessions[oldest.id]
        session = Session(secrets.token_urlsafe(32), who, digest, secrets.token_urlsafe(32),
                          self._clock() + SESSION_SECONDS)
        self._sessions[session.id] = session
        return session

    def session_of(self, cookie: str | None) -> Session | None:
        """The live session a cookie names, still allowed by the config in force."""
        if not cookie:
            return None
        session = self._sessions.get(cookie)
        if session is None:
            return None
        if session.expires <= self._clock() or not self._still_allowed(session):
            del self._sessions[session.id]
            return None
        return session

    def _still_allowed(self, session: Session) -> bool:
        auth = self._auth()
        if auth is None:
            return not session.token_sha256  # auth turned off: the anonymous sessions go on, signed-in ones end
        return any(hmac.compare_digest(session.token_sha256, t.sha256.lower()) and t.role == "admin"
                   for t in auth.tokens)

    # -- each request ------------------------------------------------------------------------
    def caller(self, authorization: str | None, cookie: str | None) -> Caller:
        """Who is asking; Refused (401/403) when they may not look."""
        auth = self._auth()
        if authorization:
            if auth is None:
                return Caller(NO_AUTH, None)
            if not authorization.startswith("Bearer "):
                raise Refused(401, "authorization: expected 'Bearer <admin token>'")
            name, _ = self._admin(auth, authorization[len("Bearer "):].strip())
            return Caller(name, None)
        session = self.session_of(cookie)
        if session is not None:
            return Caller(session.who, session)
        if auth is None:
            return Caller(NO_AUTH, None)  # may look; acting needs the anonymous session's CSRF token
        raise Refused(401, "sign in with an admin token (POST /api/v1/session), or send Authorization: Bearer")

    @staticmethod
    def check_csrf(caller: Caller, header: str | None) -> None:
        """An action riding on a cookie must carry that session's CSRF token."""
        if caller.session is None:
            if caller.who == NO_AUTH:  # no cookie and no auth: the page always has one, a forged form none
                raise Refused(403, "X-CSRF-Token missing: GET /api/v1/session first (it sets the session cookie)")
            return  # a bearer token: nothing ambient to forge
        if not header or not hmac.compare_digest(header, caller.session.csrf):
            raise Refused(403, "X-CSRF-Token missing or wrong for this session (GET /api/v1/session gives it)")

    @staticmethod
    def _admin(auth: AuthConfig, token: str) -> tuple[str, str]:
        try:
            found = identify(auth, [("authorization", f"Bearer {token}")])
        except Unauthenticated as err:
            raise Refused(401, str(err)) from None
        assert found is not None  # auth is on
        if found.role != "admin":
            raise Refused(403, f"token {found.name!r} is not an admin token (agent tokens cannot use the dashboard)")
        return found.name, found.sha256.lower()
