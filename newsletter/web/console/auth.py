"""Who is asking the console: a session cookie for people, a bearer token for the API; and what their role
lets them do (``accounts.allows``).

The session cookie is signed (itsdangerous, its own salt) and holds the user's id and ``session_epoch``:
changing the password or the role, or "log out everywhere", moves the epoch and every cookie of that user
stops working. HttpOnly, SameSite=Strict, Secure when base_url is https; it lasts ``SESSION_HOURS``.
Logins are limited per client address (``LOGIN_PER_WINDOW`` in ``LOGIN_WINDOW`` seconds, in this process)
and each account locks after ``accounts.MAX_FAILURES`` wrong passwords, whoever tries (in the database).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from itsdangerous import BadData, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from ... import accounts
from ...accounts import User

COOKIE = "nl_admin"
SESSION_HOURS = 12
LOGIN_PER_WINDOW = 10
LOGIN_WINDOW = 300.0
Endpoint = Callable[[Any, Request], Awaitable[Response]]


@dataclass(frozen=True)
class Who:
    """Whoever a request is from: a console user or an API token, with its role, as the audit log names it."""

    actor: str    # user:<name> or token:<name>
    role: str
    user: User | None = None


class Sessions:
    def __init__(self, secret: str, https: bool) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="admin-session")
        self.https = https

    def start(self, response: Response, user: User) -> None:
        value = self._serializer.dumps({"u": user.id, "e": user.session_epoch})
        response.set_cookie(COOKIE, value, max_age=SESSION_HOURS * 3600, httponly=True, samesite="strict",
                            secure=self.https, path="/")

    @staticmethod
    def end(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")

    def claim(self, request: Request) -> tuple[int, int] | None:
        """(user id, epoch) the request's cookie names, if it is ours and not expired."""
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            value = self._serializer.loads(raw, max_age=SESSION_HOURS * 3600)
        except BadData:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("u"), int) or not isinstance(value.get("e"), int):
            return None
        return value["u"], value["e"]


def requires(role: str) -> Callable[[Endpoint], Endpoint]:
    """A console page for ``role`` and above: 401 (the login form) without a session, 403 with a lower role."""
    def wrap(endpoint: Endpoint) -> Endpoint:
        @wraps(endpoint)
        async def guarded(self: Any, request: Request) -> Response:  # a base.Section
            who = await self.c.who(request)
            if who is None:
                return self.c.login_form(request, status=401)
            if not accounts.allows(who.role, role):
                return self.c.refused(request, who, role)
            request.state.who = who
            return await endpoint(self, request)
        setattr(guarded, "role", role)  # noqa: B010  (the route walk test reads it)
        return guarded
    return wrap
