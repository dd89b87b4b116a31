"""Subscriber CSV files in the console (operators): import by upload, in two steps, and export.

Import: the upload is kept (``uploads.py``: private, the uploader's own, an hour at most) and checked with
``csvio.check``, the import's own code in a transaction that is rolled back, so the preview shows the line
errors and what would change before anything is written. Confirming imports exactly that file with
``audience.import_csv``, its good rows only (the bad lines stay out, as the CLI's import without --strict), and
removes it. Export streams ``csvio.export_chunks``, a keyset page at a time, never the list in memory.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy.engine import Connection, Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ... import audience
from ...audience import csvio
from ...errors import AudienceError
from ...store.tables import SUBSCRIBER_STATUSES
from ..guard import CSRF_FIELD
from .auth import Who, requires
from .base import BadForm, Section
from .uploads import MAX_BYTES, Upload, UploadError, Uploads

SHOWN_ERRORS = 500  # line errors listed on the preview; the count says how many more


class SubscriberFiles(Section):
    uploads = Uploads()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/subscribers/import", self.import_form),
            Route("/subscribers/import", self.upload, methods=["POST"]),
            Route("/subscribers/import/{upload}", self.confirm, methods=["POST"]),
            Route("/subscribers/export.csv", self.export),
        ]

    # --- import -----------------------------------------------------------------------------------------------

    @requires("operator")
    async def import_form(self, request: Request) -> Response:
        return self._import_page(request)

    def _import_page(self, request: Request, status: int = 200, **ctx: object) -> Response:
        ctx.setdefault("error", "")
        return self.c.admin_page(request, "import.html.j2", status, title="Subscribers", shown=SHOWN_ERRORS,
                                 max_mb=MAX_BYTES // (1024 * 1024), **ctx)

    @requires("operator")
    async def upload(self, request: Request) -> Response:
        """Keep the file, check it, show what importing it would do; nothing is written to the list."""
        if int(request.headers.get("content-length") or 0) > MAX_BYTES + 65536:
            return self._import_page(request, 413, error=f"The file is larger than {MAX_BYTES // 2**20} MB; split it.")
        who: Who = request.state.who
        async with request.form(max_files=1, max_fields=5) as form:  # closes Starlette's spooled copy
            if not self.c.csrf.valid(request, form.get(CSRF_FIELD)):
                raise BadForm
            file = form.get("file")
            if not isinstance(file, UploadFile) or not file.filename:
                return self._import_page(request, 400, error="Choose a CSV file to upload.")
            try:
                kept = await run_in_threadpool(self.uploads.save, who.actor, file.file, file.filename)
            except UploadError as exc:
                return self._import_page(request, 413, error=str(exc))
        return await self._preview(request, who, kept)

    async def _preview(self, request: Request, who: Who, kept: Upload) -> Response:
        try:
            result = await run_in_threadpool(csvio.check, self.c.engine, kept.path, self.c.areas)
        except AudienceError as exc:
            self.uploads.discard(who.actor, kept.id)
            return self._import_page(request, 400, error=str(exc).replace(str(kept.path), kept.name))
        return self._import_page(request, upload=kept, result=result)

    @requires("operator")
    async def confirm(self, request: Request) -> Response:
        """Import the upload the preview showed (only its uploader's), or discard it."""
        form = await self.c.checked_form(request)
        who: Who = request.state.who
        kept = await run_in_threadpool(self.uploads.find, who.actor, request.path_params["upload"])
        if kept is None:
            return self._import_page(request, 404, error="That upload is gone (imported, discarded, older than an "
                                                         "hour, or not yours); upload the file again.")
        if form.get("do") == "discard":
            self.uploads.discard(who.actor, kept.id)
            return self.c.see_other(request, "/subscribers/import")
        cause = f"imported by {who.actor} from {kept.name}"
        try:
            result = await self.c.act(who, "subscribers.import", kept.name, _import, kept, self.c.areas, cause)
        except AudienceError as exc:
            return self._import_page(request, 400, error=str(exc).replace(str(kept.path), kept.name))
        finally:
            self.uploads.discard(who.actor, kept.id)
        return self._import_page(request, result=result, done=True, file_name=kept.name)

    # --- export -----------------------------------------------------------------------------------------------

    @requires("operator")
    async def export(self, request: Request) -> Response:
        """The subscribers of one status as CSV (email,name,areas), streamed; in the audit log, as it holds them."""
        status = request.query_params.get("status", "active")
        if status not in SUBSCRIBER_STATUSES:
            return self.c.admin_page(request, "message.html.j2", 400, title="Subscribers",
                                     text=f"status: {status!r} is not one of {', '.join(SUBSCRIBER_STATUSES)}")
        await self.c.act(request.state.who, "subscribers.export", f"status {status}", _nothing)
        headers = {"Content-Disposition": f'attachment; filename="subscribers-{status}.csv"',
                   "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
        return StreamingResponse(_chunks(self.c.engine, status), media_type="text/csv; charset=utf-8",
                                 headers=headers)


def _import(conn: Connection, kept: Upload, known: tuple[str, ...], cause: str) -> csvio.ImportResult:
    return audience.import_csv(conn, kept.path, known, cause=cause)


def _nothing(conn: Connection) -> None:
    """An export changes nothing; its audit line is the point."""


def _chunks(engine: Engine, status: str) -> Iterator[str]:
    """The CSV a keyset page at a time, on a connection of its own held while the response streams."""
    with engine.connect() as conn:
        for text, _ in csvio.export_chunks(conn, status):
            yield text
