"""Signing in and out, the users and API tokens (admins), and the audit log: the console's own people."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ... import accounts, audit
from ...errors import AccountError
from ..guard import client_ip
from .auth import Who, requires
from .base import Section

AUDIT_PAGE = 100


class People(Section):
    def routes(self) -> list[BaseRoute]:
        return [
            Route("/login", self.login_page), Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/logout-everywhere", self.logout_everywhere, methods=["POST"]),
            Route("/users", self.users), Route("/users", self.add_user, methods=["POST"]),
            Route("/users/{uid:int}/role", self.set_role, methods=["POST"]),
            Route("/users/{uid:int}/password", self.set_password, methods=["POST"]),
            Route("/users/{uid:int}/remove", self.remove_user, methods=["POST"]),
            Route("/tokens", self.create_token, methods=["POST"]),
            Route("/tokens/{tid:int}/revoke", self.revoke_token, methods=["POST"]),
            Route("/audit", self.audit_page),
        ]

    # --- signing in -----------------------------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        return self.c.login_form(request)

    async def login(self, request: Request) -> Response:
        form = await self.c.checked_form(request)
        if not self.c.login_limit.allow(client_ip(request)):
            return self.c.login_form(request, 429, "Too many sign-in attempts from here; wait a few minutes.")
        name, password = str(form.get("name", "")), str(form.get("password", ""))
        user = await self.c.db(accounts.authenticate, name, password, self.c.stamp())
        if isinstance(user, str):
            await self.c.db(audit.record, f"login:{name[:64]}", "login.refused", client_ip(request), self.c.stamp(),
                            user)
            return self.c.login_form(request, 401, user)
        await self.c.db(audit.record, f"user:{user.name}", "login", client_ip(request), self.c.stamp())
        response = self.c.see_other(request, _next(str(form.get("next", ""))))
        self.c.sessions.start(response, user)
        return response

    @requires("editor")
    async def logout(self, request: Request) -> Response:
        await self.c.checked_form(request)
        response = self.c.see_other(request, "/login")
        self.c.sessions.end(response)
        return response

    @requires("editor")
    async def logout_everywhere(self, request: Request) -> Response:
        await self.c.checked_form(request)
        who: Who = request.state.who
        assert who.user is not None
        await self.c.act(who, "logout.everywhere", who.user.name, accounts.end_sessions, who.user.id)
        response = self.c.see_other(request, "/login")
        self.c.sessions.end(response)
        return response

    # --- users and tokens (admins) ----------------------------------------------------------------------------

    @requires("admin")
    async def users(self, request: Request) -> Response:
        return await self._users(request)

    async def _users(self, request: Request, error: str = "", secret: str = "", status: int = 200) -> Response:
        people = await self.c.db(accounts.users)
        tokens = await self.c.db(accounts.tokens)
        return self.c.admin_page(request, "users.html.j2", status, title="Users & tokens", users=people,
                                 tokens=tokens, roles=accounts.ROLES, error=error, secret=secret)

    @requires("admin")
    async def add_user(self, request: Request) -> Response:
        form = await self.c.checked_form(request)
        name, role = str(form.get("name", "")).strip(), str(form.get("role", ""))
        try:
            await self.c.act(request.state.who, "user.add", name, accounts.add_user, name, role,
                             str(form.get("password", "")), self.c.stamp(), detail=f"role {role}")
        except AccountError as exc:
            return await self._users(request, error=str(exc), status=400)
        return self.c.see_other(request, "/users")

    @requires("admin")
    async def set_role(self, request: Request) -> Response:
        form = await self.c.checked_form(request)
        uid, role = request.path_params["uid"], str(form.get("role", ""))
        try:
            await self.c.act(request.state.who, "user.role", f"user #{uid}", accounts.set_role, uid, role,
                             detail=role)
        except AccountError as exc:
            return await self._users(request, error=str(exc), status=400)
        return self.c.see_other(request, "/users")

    @requires("admin")
    async def set_password(self, request: Request) -> Response:
        form = await self.c.checked_form(request)
        uid = request.path_params["uid"]
        try:
            await self.c.act(request.state.who, "user.password", f"user #{uid}", accounts.set_password, uid,
                             str(form.get("password", "")))
        except AccountError as exc:
            return await self._users(request, error=str(exc), status=400)
        return self.c.see_other(request, "/users")

    @requires("admin")
    async def remove_user(self, request: Request) -> Response:
        await self.c.checked_form(request)
        uid = request.path_params["uid"]
        try:
            await self.c.act(request.state.who, "user.remove", f"user #{uid}", accounts.remove_user, uid)
        except AccountError as exc:
            return await self._users(request, error=str(exc), status=400)
        return self.c.see_other(request, "/users")

    @requires("admin")
    async def create_token(self, request: Request) -> Response:
        form = await self.c.checked_form(request)
        who: Who = request.state.who
        name, role = str(form.get("name", "")), str(form.get("role", ""))
        try:
            _, secret = await self.c.act(who, "token.create", name, accounts.create_token, name, role, who.actor,
                                         self.c.stamp(), detail=f"role {role}")
        except AccountError as exc:
            return await self._users(request, error=str(exc), status=400)
        return await self._users(request, secret=secret)  # shown this once, never stored

    @requires("admin")
    async def revoke_token(self, request: Request) -> Response:
        await self.c.checked_form(request)
        tid = request.path_params["tid"]
        try:
            await self.c.act(request.state.who, "token.revoke", f"token #{tid}", accounts.revoke_token, tid,
                             self.c.stamp())
        except AccountError as exc:
            return await self._users(request, error=str(exc), status=400)
        return self.c.see_other(request, "/users")

    # --- the audit log ------------------------------------------------------------------------------------------

    @requires("operator")
    async def audit_page(self, request: Request) -> Response:
        before = request.query_params.get("before", "")
        entries = await self.c.db(audit.recent, AUDIT_PAGE, int(before) if before.isdigit() else None)
        older = entries[-1].id if len(entries) == AUDIT_PAGE else None
        return self.c.admin_page(request, "audit.html.j2", title="Audit log", entries=entries, older=older)


def _next(path: str) -> str:
    """Where to go after signing in: a console path only (``/subscribers``), never another site."""
    if path.startswith("/") and not path.startswith("//") and "\\" not in path and path != "/login":
        return path
    return "/"

