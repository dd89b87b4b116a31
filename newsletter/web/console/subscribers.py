"""The subscribers (operators): search them, page through them, open one with its history, and act on it (areas,
block, unblock, unsubscribe, erase), each action through ``audience`` as the CLI and the API do, with its audit
line in the same transaction. Import and export are in ``subscriber_files.py``.

The list is keyset-paged (50 a page, "next" after the last id shown) through ``audience.search.page``, which
reads the search index of migration 0008; nothing counts every match (a page says "more" when there is a next
one). The first page of the whole list shows the counts by status (one GROUP BY over the status index); a search
or a next page does not count. Measured at 1,000,000 subscribers in bench/subscribers_search.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.engine import Connection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ... import audience
from ...audience import history, search
from ...errors import AudienceError
from ...store.tables import SUBSCRIBER_STATUSES
from ..pages import strings
from .auth import Who, requires
from .base import Section

SEARCH_MAX = 200


def keyset(value: str | None) -> int | None:
    """A cursor from the query string (an id); anything else is no cursor."""
    return int(value) if value and value.isdigit() and len(value) < 19 else None


def query_of(params: Any) -> search.Query:
    return search.Query(str(params.get("q", ""))[:SEARCH_MAX], str(params.get("status", "")),
                        str(params.get("area", "")))


def _list(conn: Connection, known: Sequence[str], query: search.Query,
          after: int | None) -> tuple[search.Found, dict[str, int]]:
    """The page, and on the first page of the whole list only, the counts by status: they cost 14-85 ms at 1M
    (bench/subscribers_search.py) where the page's own query costs 1-10 ms, so a search or a next page skips them."""
    landing = query == search.Query() and after is None
    return search.page(conn, known, query, after), search.status_counts(conn) if landing else {}


def _one(conn: Connection, sid: int, before: tuple[int | None, ...]) -> tuple[audience.Subscriber | None,
                                                                           history.History | None]:
    sub = audience.get_id(conn, sid)
    return (sub, history.history(conn, sid, history.PAGE, *before)) if sub else (None, None)


class Subscribers(Section):
    def routes(self) -> list[BaseRoute]:
        one = "/subscribers/{sid:int}"
        return [
            Route("/subscribers", self.list_page),
            Route(one, self.subscriber_page),
            Route(f"{one}/areas", self.set_areas, methods=["POST"]),
            Route(f"{one}/block", self.block, methods=["POST"]),
            Route(f"{one}/unblock", self.unblock, methods=["POST"]),
            Route(f"{one}/unsubscribe", self.unsubscribe, methods=["POST"]),
            Route(f"{one}/erase", self.erase, methods=["POST"]),
        ]

    # --- the list ---------------------------------------------------------------------------------------------

    @requires("operator")
    async def list_page(self, request: Request) -> Response:
        query, after = query_of(request.query_params), keyset(request.query_params.get("after"))
        try:
            found, counts = await self.c.db(_list, self.c.areas, query, after)
        except AudienceError as exc:
            found, counts = search.Found([], None), {}
            return self._list(request, query, found, counts, after, str(exc), 400)
        return self._list(request, query, found, counts, after)

    def _list(self, request: Request, query: search.Query, found: search.Found, counts: dict[str, int],
              after: int | None, error: str = "", status: int = 200) -> Response:
        asked = {k: v for k, v in (("q", query.search), ("status", query.status), ("area", query.area)) if v}
        following = urlencode({**asked, "after": found.after}) if found.after else ""
        return self.c.admin_page(request, "subscribers.html.j2", status, title="Subscribers", query=query,
                                 found=found, counts=counts, statuses=SUBSCRIBER_STATUSES, areas=self.c.areas,
                                 first=urlencode(asked) if after else None, following=following, error=error,
                                 erased=request.query_params.get("erased", ""))

    # --- one subscriber ---------------------------------------------------------------------------------------

    @requires("operator")
    async def subscriber_page(self, request: Request) -> Response:
        return await self._page(request)

    async def _page(self, request: Request, error: str = "", status: int = 200) -> Response:
        sid = request.path_params["sid"]
        params = request.query_params
        before = tuple(keyset(params.get(f"{name}_before")) for name in ("messages", "notices", "events"))
        sub, past = await self.c.db(_one, sid, before)
        if sub is None:
            return self.c.admin_page(request, "message.html.j2", 404, title="Subscribers",
                                     text=f"There is no subscriber #{sid} (erased, or never was).")
        return self.c.admin_page(request, "subscriber.html.j2", status, title="Subscribers", sub=sub, history=past,
                                 areas=self.c.areas, error=error)

    @requires("operator")
    async def set_areas(self, request: Request) -> Response:
        form = await self.c.checked_form(request)
        chosen = [a for a in strings(form.getlist("areas")) if a in self.c.areas]
        return await self._act(request, "subscriber.areas", audience.set_areas_id, chosen, self.c.areas,
                               detail=";".join(chosen) or "all areas")

    @requires("operator")
    async def block(self, request: Request) -> Response:
        form = await self.c.checked_form(request)
        who: Who = request.state.who
        reason = " ".join(str(form.get("reason", "")).split())[:300]
        cause = f"blocked by {who.actor}" + (f": {reason}" if reason else "")
        return await self._act(request, "subscriber.block", audience.block, cause, self.c.stamp(), detail=reason)

    @requires("operator")
    async def unblock(self, request: Request) -> Response:
        await self.c.checked_form(request)
        who: Who = request.state.who
        return await self._act(request, "subscriber.unblock", audience.unblock, f"unblocked by {who.actor}",
                               self.c.stamp())

    @requires("operator")
    async def unsubscribe(self, request: Request) -> Response:
        await self.c.checked_form(request)
        who: Who = request.state.who
        return await self._act(request, "subscriber.unsubscribe", audience.unsubscribe_by_operator,
                               f"unsubscribed by {who.actor}", self.c.stamp())

    @requires("operator")
    async def erase(self, request: Request) -> Response:
        """Erasing cannot be undone: the form must carry the address, typed by the person (any case)."""
        form = await self.c.checked_form(request)
        sid = request.path_params["sid"]
        sub = await self.c.db(audience.get_id, sid)
        typed = str(form.get("confirm", "")).strip()
        if sub is None or typed.casefold() != sub.email.casefold():
            return await self._page(request, "To erase, type the subscriber's address exactly; nothing was erased.",
                                    400 if sub else 404)
        await self.c.act(request.state.who, "subscriber.erase", f"subscriber #{sid}", audience.delete_id, sid,
                         self.c.stamp())
        return self.c.see_other(request, f"/subscribers?{urlencode({'erased': sid})}")

    async def _act(self, request: Request, action: str, fn: Callable[..., Any], *args: Any,
                   detail: str = "") -> Response:
        """``fn(conn, sid, *args)`` with its audit line; back to the subscriber's page, or its page with the error."""
        sid = request.path_params["sid"]
        try:
            await self.c.act(request.state.who, action, f"subscriber #{sid}", fn, sid, *args, detail=detail)
        except AudienceError as exc:
            return await self._page(request, str(exc), 400)
        return self.c.see_other(request, f"/subscribers/{sid}")
