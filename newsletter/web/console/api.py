"""The JSON API, ``/api/v1/…``: what the console does, for scripts, over the same library functions.

Every request carries ``Authorization: Bearer <token>`` (``newsletter admin token NAME --role R``, or the
console's Users & tokens page); the token's role decides what it may do, as a user's does in the console.
Answers are JSON; an error is ``{"error": "<one line>"}`` with its status (400 a bad value, 401 no or a dead
token, 403 the wrong role, 404 nothing there). Every change is in the audit log as ``token:<name>``.
The OpenAPI document is ``/api/v1/openapi.json``, made from the endpoints' docstrings (Starlette's
SchemaGenerator: the YAML after ``---``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.schemas import SchemaGenerator

from ... import accounts, audit
from ...clock import SYSTEM, Clock
from ...config import Config
from ...errors import NewsletterError
from ..pages import in_transaction
from .auth import Who
from .openapi import document

T = TypeVar("T")
Endpoint = Callable[[Any, Request], Awaitable[Response]]
SCHEMA = SchemaGenerator({
    "openapi": "3.0.3",
    "info": {"title": "newsletter API", "version": "1"},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearer": []}],
})


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ApiBase:
    """The API's shared state: the database, the clock, and the token a request brings."""

    def __init__(self, config: Config, engine: Engine, now: Clock = SYSTEM) -> None:
        self.config, self.engine, self.now = config, engine, now

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        return await in_transaction(self.engine, fn, *args)

    async def who(self, request: Request) -> Who | None:
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return None
        token = await self.db(accounts.token_for, secret.strip(), self.now.now())
        return Who(f"token:{token.name}", token.role) if token else None

    async def act(self, who: Who, action: str, target: str, fn: Callable[..., T], *args: Any, detail: str = "") -> T:
        """``fn(conn, *args)`` and its audit line in one transaction."""
        return await self.db(audit.audited(fn, who.actor, action, target, self.now.now(), detail), *args)

    async def body(self, request: Request) -> dict[str, Any]:
        """The request's JSON object; 400 for anything else."""
        try:
            value = await request.json()
        except ValueError:
            raise ApiError(400, "the body must be a JSON object") from None
        if not isinstance(value, dict):
            raise ApiError(400, "the body must be a JSON object")
        return value


class ApiSection:
    """A group of API endpoints over the one ``ApiBase`` (``a``)."""

    def __init__(self, api: ApiBase) -> None:
        self.a = api

    def routes(self) -> list[BaseRoute]:
        raise NotImplementedError


def api(role: str) -> Callable[[Endpoint], Endpoint]:
    """An API endpoint for tokens of ``role`` and above: 401 without a live token, 403 with a lower role."""
    def wrap(endpoint: Endpoint) -> Endpoint:
        @wraps(endpoint)
        async def guarded(self: ApiSection, request: Request) -> Response:
            who = await self.a.who(request)
            if who is None:
                return error(401, "a live API token is needed: Authorization: Bearer <token>",
                             {"WWW-Authenticate": 'Bearer realm="newsletter"'})
            if not accounts.allows(who.role, role):
                return error(403, f"this needs a token of the {role} role; this one is {who.role}")
            request.state.who = who
            return await endpoint(self, request)
        setattr(guarded, "role", role)  # noqa: B010  (the route walk test reads it)
        return guarded
    return wrap


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status, headers=headers)


class Meta(ApiSection):
    def routes(self) -> list[BaseRoute]:
        return [Route("/v1/whoami", self.whoami), Route("/v1/openapi.json", self.openapi, include_in_schema=False)]

    @api("editor")
    async def whoami(self, request: Request) -> Response:
        """The token's name and role.
        ---
        summary: Who this token is
        responses:
          200: {description: "{name, role}"}
          401: {description: no or a dead token}
        """
        who: Who = request.state.who
        return JSONResponse({"name": who.actor.split(":", 1)[1], "role": who.role})

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(document(SCHEMA, request.app.routes))


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error(exc.status, str(exc))


async def _user_error(request: Request, exc: Exception) -> Response:
    return error(400, str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, str(exc.detail))


HANDLERS = {ApiError: _api_error, NewsletterError: _user_error, HTTPException: _http_error}
