"""``/api/v1/subscribers``: the subscribers as JSON for operators' tokens, over the functions the console and the CLI
call (``audience``): search with a cursor, one with its history, add, areas, unsubscribe, block, unblock, erase,
and import a CSV body. Every change is audited as ``token:<name>`` in its own transaction.

A subscriber is ``Subscriber.as_json`` (the keys of ``subscribers list --json``) with its ``id``. Erasing names the
address in its body, ``{"confirm": "ada@example.org"}``, as the console's form asks it typed. An unknown id is 404,
a bad value 400 with the one-line reason.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ... import audience
from ...audience import csvio, history, search
from ...audience.subscribers import Subscriber
from .api import ApiBase, ApiError, ApiSection, api
from .auth import Who
from .subscribers import SEARCH_MAX, keyset
from .uploads import Uploads, check_size

LIMIT_MAX = 200


def subscriber_json(sub: Subscriber) -> dict[str, Any]:
    return {"id": sub.id, **sub.as_json()}


def history_json(past: history.History) -> dict[str, Any]:
    def page(found: history.Page[Any]) -> dict[str, Any]:
        return {"items": [_plain(item) for item in found.items], "older": found.older}
    return {"messages": page(past.messages), "notices": page(past.notices), "events": page(past.events)}


def _plain(item: Any) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in vars(item).items()}


def _with_history(conn: Connection, sid: int) -> tuple[Subscriber | None, history.History | None]:
    sub = audience.get_id(conn, sid)
    return (sub, history.history(conn, sid)) if sub else (None, None)


class SubscribersApi(ApiSection):
    def __init__(self, base: ApiBase) -> None:
        super().__init__(base)
        self.areas = tuple(base.config.newsletter.areas)
        self.uploads = Uploads()

    def routes(self) -> list[BaseRoute]:
        one = "/v1/subscribers/{sid:int}"
        return [
            Route("/v1/subscribers", self.list_subscribers), Route("/v1/subscribers", self.add, methods=["POST"]),
            Route("/v1/subscribers/import", self.import_csv, methods=["POST"]),
            Route(one, self.get_subscriber), Route(one, self.erase, methods=["DELETE"]),
            Route(f"{one}/areas", self.set_areas, methods=["POST"]),
            Route(f"{one}/unsubscribe", self.unsubscribe, methods=["POST"]),
            Route(f"{one}/block", self.block, methods=["POST"]),
            Route(f"{one}/unblock", self.unblock, methods=["POST"]),
        ]

    @api("operator")
    async def list_subscribers(self, request: Request) -> Response:
        """Subscribers in id order, a page at a time; ``next`` is the cursor of the following page (null: the last).
        ---
        summary: Search the subscribers
        parameters:
          - {name: search, in: query, schema: {type: string}, description: "a piece of the address or name, any case"}
          - {name: status, in: query, schema: {type: string, enum: [pending, active, unsubscribed, bounced, blocked]}}
          - {name: area, in: query, schema: {type: string}, description: gets this area in full}
          - {name: cursor, in: query, schema: {type: string}, description: "the previous answer's next"}
          - {name: limit, in: query, schema: {type: integer, default: 50, maximum: 200}}
        responses:
          200: {description: "{subscribers: [{id, email, name, areas, status, source, created_at, confirmed_at,
            unsubscribed_at}], next}"}
          400: {description: "a bad status, area or limit"}
        """
        params = request.query_params
        query = search.Query(params.get("search", "")[:SEARCH_MAX], params.get("status", ""), params.get("area", ""))
        limit = keyset(params.get("limit")) or search.PAGE
        if not 1 <= limit <= LIMIT_MAX:
            raise ApiError(400, f"limit: 1 to {LIMIT_MAX}")
        found = await self.a.db(search.page, self.areas, query, keyset(params.get("cursor")), limit)
        return JSONResponse({"subscribers": [subscriber_json(s) for s in found.subscribers],
                             "next": str(found.after) if found.after else None})

    @api("operator")
    async def get_subscriber(self, request: Request) -> Response:
        """One subscriber and the newest page of its history: messages, notices (bounces, complaints), status
        changes with their cause.
        ---
        summary: Get a subscriber with its history
        responses:
          200: {description: "{id, email, …, history: {messages, notices, events}}: each {items, older}"}
          404: {description: no such subscriber}
        """
        sub, past = await self.a.db(_with_history, request.path_params["sid"])
        if sub is None or past is None:
            raise ApiError(404, f"no subscriber #{request.path_params['sid']}")
        return JSONResponse({**subscriber_json(sub), "history": history_json(past)})

    @api("operator")
    async def add(self, request: Request) -> Response:
        """Add one active subscriber, as ``newsletter subscribers add`` does.
        ---
        summary: Add a subscriber
        requestBody:
          content: {application/json: {schema: {type: object, required: [email], properties: {email: {type: string},
            name: {type: string}, areas: {type: array, items: {type: string}, description: "[] = all"}}}}}
        responses:
          201: {description: the subscriber}
          400: {description: "a bad address, name or area, or already on the list or the suppression list"}
        """
        body = await self.a.body(request)
        email, name, areas = _text(body, "email"), _text(body, "name"), _areas(body)
        who: Who = request.state.who
        sub = await self.a.act(who, "subscriber.add", email, _add, email, name, areas, self.areas, who.actor,
                               self.a.now.now())
        return JSONResponse(subscriber_json(sub), 201)

    @api("operator")
    async def set_areas(self, request: Request) -> Response:
        """Choose the areas the subscriber gets in full (``[]``: all of them).
        ---
        summary: Set a subscriber's areas
        requestBody:
          content: {application/json: {schema: {type: object, required: [areas],
            properties: {areas: {type: array, items: {type: string}}}}}}
        responses:
          200: {description: the subscriber}
          400: {description: an unknown area}
          404: {description: no such subscriber}
        """
        areas = _areas(await self.a.body(request))
        return await self._act(request, "subscriber.areas", audience.set_areas_id, areas, self.areas,
                               detail=";".join(areas) or "all areas")

    @api("operator")
    async def unsubscribe(self, request: Request) -> Response:
        """Unsubscribe; repeating it changes nothing.
        ---
        summary: Unsubscribe a subscriber
        responses:
          200: {description: the subscriber}
          404: {description: no such subscriber}
        """
        who: Who = request.state.who
        return await self._act(request, "subscriber.unsubscribe", audience.unsubscribe_by_operator,
                               f"unsubscribed by {who.actor}", self.a.now.now())

    @api("operator")
    async def block(self, request: Request) -> Response:
        """Block: never mailed, and no import, sign-up or link makes it active, until unblocked.
        ---
        summary: Block a subscriber
        requestBody:
          content: {application/json: {schema: {type: object, properties: {reason: {type: string}}}}}
        responses:
          200: {description: the subscriber}
          400: {description: blocked already}
          404: {description: no such subscriber}
        """
        body = await self.a.body(request) if await request.body() else {}
        reason = " ".join(_text(body, "reason").split())[:300]
        who: Who = request.state.who
        cause = f"blocked by {who.actor}" + (f": {reason}" if reason else "")
        return await self._act(request, "subscriber.block", audience.block, cause, self.a.now.now(), detail=reason)

    @api("operator")
    async def unblock(self, request: Request) -> Response:
        """Lift a block: the subscriber gets back the status it had before it.
        ---
        summary: Unblock a subscriber
        responses:
          200: {description: the subscriber}
          400: {description: not blocked}
          404: {description: no such subscriber}
        """
        who: Who = request.state.who
        return await self._act(request, "subscriber.unblock", audience.unblock, f"unblocked by {who.actor}",
                               self.a.now.now())

    @api("operator")
    async def erase(self, request: Request) -> Response:
        """Erase for good: the address, name and history go; a keyed hash stays so no import adds it again.
        ---
        summary: Erase a subscriber
        requestBody:
          content: {application/json: {schema: {type: object, required: [confirm],
            properties: {confirm: {type: string, description: "the subscriber's address, typed"}}}}}
        responses:
          200: {description: "{erased: id}"}
          400: {description: confirm is not the subscriber's address}
          404: {description: no such subscriber}
        """
        sid = request.path_params["sid"]
        typed = _text(await self.a.body(request), "confirm").strip()
        sub = await self.a.db(audience.get_id, sid)
        if sub is None:
            raise ApiError(404, f"no subscriber #{sid}")
        if typed.casefold() != sub.email.casefold():
            raise ApiError(400, "confirm: the subscriber's address, to erase it; nothing was erased")
        await self.a.act(request.state.who, "subscriber.erase", f"subscriber #{sid}", audience.delete_id, sid,
                         self.a.now.now())
        return JSONResponse({"erased": sid})

    @api("operator")
    async def import_csv(self, request: Request) -> Response:
        """Import a CSV body (header ``email,name,areas``): its good rows, the bad lines listed and left out;
        ``dry_run`` writes nothing and says what would change, ``strict`` imports nothing if a line is bad.
        ---
        summary: Import subscribers from CSV
        parameters:
          - {name: dry_run, in: query, schema: {type: boolean, default: false}}
          - {name: strict, in: query, schema: {type: boolean, default: false}}
        requestBody:
          content: {text/csv: {schema: {type: string}}}
        responses:
          200: {description: "{rows, added, updated, unchanged, not_reactivated, suppressed, rejected: [{line,
            reason}], needs_smtputf8, ignored_columns, written}"}
          400: {description: "not a subscriber CSV, not UTF-8, or over the size limit"}
        """
        dry_run, strict = _flag(request, "dry_run"), _flag(request, "strict")
        who: Who = request.state.who
        with self.uploads.scratch() as path:
            await _receive(request, path)
            try:
                result = await (run_in_threadpool(csvio.check, self.a.engine, path, self.areas) if dry_run else
                                self.a.act(who, "subscribers.import", "CSV body", _import, path, self.areas, strict,
                                           f"imported by {who.actor}"))
            except _Refused as refused:  # rolled back, its audit line with it
                return JSONResponse({"error": str(refused), **_result_json(refused.result)}, 400)
        return JSONResponse(_result_json(result))

    async def _act(self, request: Request, action: str, fn: Any, *args: Any, detail: str = "") -> Response:
        """``fn(conn, sid, *args)`` with its audit line, answered with the subscriber as it is after; 404 first."""
        sid = request.path_params["sid"]
        if await self.a.db(audience.get_id, sid) is None:
            raise ApiError(404, f"no subscriber #{sid}")
        sub = await self.a.act(request.state.who, action, f"subscriber #{sid}", fn, sid, *args, detail=detail)
        return JSONResponse(subscriber_json(sub))


def _add(conn: Connection, email: str, name: str, areas: list[str], known: tuple[str, ...], actor: str,
         now: Any) -> Subscriber:
    return audience.add(conn, email, name, areas, known, source="cli", now=now, cause=f"added by {actor}")


def _import(conn: Connection, path: Any, known: tuple[str, ...], strict: bool, cause: str) -> csvio.ImportResult:
    """The import in the action's transaction; with ``strict`` and a bad line, nothing of it is kept."""
    result = audience.import_csv(conn, path, known, strict=strict, cause=cause)
    if not result.written:
        raise _Refused(result)
    return result


class _Refused(Exception):
    def __init__(self, result: csvio.ImportResult) -> None:
        super().__init__("strict: a line is bad, so nothing was imported")
        self.result = result


async def _receive(request: Request, path: Any) -> None:
    size = 0
    with open(path, "wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            check_size(size)
            out.write(chunk)


def _result_json(result: csvio.ImportResult) -> dict[str, Any]:
    return {**{k: v for k, v in vars(result).items() if k != "rejected"},
            "rejected": [{"line": line, "reason": reason} for line, reason in result.rejected]}


def _flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").casefold()
    if value not in ("true", "false", "1", "0", ""):
        raise ApiError(400, f"{name}: true or false")
    return value in ("true", "1")


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise ApiError(400, f"{key}: a string")
    return value


def _areas(body: dict[str, Any]) -> list[str]:
    value = body.get("areas", [])
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise ApiError(400, "areas: a list of area names ([] = all)")
    return value
