"""``/api/v1/bounces``: the bounce log as JSON for operators' tokens, over the functions the console and ``bounces
report`` / ``bounces show`` call (``feedback/report.py``): the log newest first with a cursor, one notice with its
raw text, and the report.

A notice is a stranger's text, so these answers are written in ASCII JSON: every character outside ASCII and every
control character is a ``\\uXXXX`` escape, and a terminal that prints the answer as it comes (``curl``) is never
handed an escape sequence, 7-bit or 8-bit (C1). The raw text is the notice as it came, decoded as UTF-8 (a byte
that is not becomes U+FFFD); a script decodes the JSON and reads it exactly.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ...feedback.report import KINDS, LogQuery, bounce_report, log_page, logged
from .api import ApiError, ApiSection, api
from .bounces import SLUG_MAX
from .subscribers import keyset

LIMIT_MAX = 200
FLAGS = {"true": True, "1": True, "false": False, "0": False, "": False}


class AsciiJSON(JSONResponse):
    """JSON with every non-ASCII and control character escaped (Starlette's own writes UTF-8 as it is)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _query(params: Any) -> LogQuery:
    kind, unproven, issue = params.get("kind", ""), params.get("unproven", "").lower(), params.get("issue", "")
    if kind and kind not in KINDS:
        raise ApiError(400, f"kind: one of {', '.join(KINDS)}")
    if unproven not in FLAGS:
        raise ApiError(400, "unproven: true or false")
    if len(issue) > SLUG_MAX:
        raise ApiError(400, f"issue: an issue's date, at most {SLUG_MAX} characters")
    return LogQuery(kind, FLAGS[unproven], issue)


class BouncesApi(ApiSection):
    def routes(self) -> list[BaseRoute]:
        return [Route("/v1/bounces", self.list_notices), Route("/v1/bounces/report", self.report),
                Route("/v1/bounces/{nid:int}", self.get_notice)]

    @api("operator")
    async def list_notices(self, request: Request) -> Response:
        """The bounce log newest first, a page at a time; ``next`` is the cursor of the older page (null: the last).
        ---
        summary: The bounce log
        parameters:
          - {name: kind, in: query, schema: {type: string, enum: [bounce, complaint, auto-reply, not-bounce, unknown,
            unsubscribe]}}
          - {name: unproven, in: query, schema: {type: boolean}, description: "only the notices that named someone
            without proof, so changed nothing"}
          - {name: issue, in: query, schema: {type: string}, description: "only those about this issue (its date)"}
          - {name: cursor, in: query, schema: {type: string}, description: "the previous answer's next"}
          - {name: limit, in: query, schema: {type: integer, default: 50, maximum: 200}}
        responses:
          200:
            description: a page of the log
            content:
              application/json:
                schema:
                  type: object
                  properties:
                    next: {type: string, nullable: true}
                    notices:
                      type: array
                      items:
                        type: object
                        properties:
                          id: {type: integer}
                          received_at: {type: string, format: date-time}
                          source: {type: string, description: "smtp, imap:<folder>, a file, or a provider (ses, …)"}
                          kind: {type: string}
                          recipient: {type: string, nullable: true}
                          bounce_class: {type: string, enum: [hard, soft], nullable: true}
                          status: {type: string, nullable: true, description: "RFC 3463, as 5.1.1"}
                          diagnostic: {type: string, nullable: true}
                          reason: {type: string, nullable: true, description: "Sisimai's reason (userunknown,
                            mailboxfull, blocked, …; feedback for a complaint; suppressed when a provider will not
                            send to the address again); null before migration 0009"}
                          proof: {type: string, nullable: true, description: "verp, message-id, signed-link; none:
                            unproven"}
                          unproven: {type: boolean}
                          action: {type: string}
                          issue: {type: string, nullable: true}
                          subscriber_id: {type: integer, nullable: true}
                          raw_until: {type: string, format: date-time, nullable: true}
          400: {description: "an unknown kind, or a bad unproven or limit"}
        """
        params = request.query_params
        limit = keyset(params.get("limit")) or 50
        if not 1 <= limit <= LIMIT_MAX:
            raise ApiError(400, f"limit: 1 to {LIMIT_MAX}")
        found = await self.a.db(log_page, _query(params), keyset(params.get("cursor")), limit)
        return AsciiJSON({"notices": [n.as_json() for n in found.notices],
                          "next": str(found.older) if found.older else None})

    @api("operator")
    async def get_notice(self, request: Request) -> Response:
        """One notice: its verdict, what was done, its proof, and its raw text while it is kept (null after).
        ---
        summary: One notice of the bounce log
        parameters:
          - {name: nid, in: path, required: true, schema: {type: integer}, description: the notice's id}
        responses:
          200: {description: "{id, …, reason, …, raw}: a notice's fields as GET /v1/bounces gives them, and raw as
            text"}
          404: {description: no such notice}
        """
        found = await self.a.db(logged, request.path_params["nid"])
        if found is None:
            raise ApiError(404, f"no notice #{request.path_params['nid']} in the bounce log")
        row, raw = found
        return AsciiJSON({**row.as_json(), "raw": raw.decode("utf-8", "replace") if raw is not None else None})

    @api("operator")
    async def report(self, request: Request) -> Response:
        """``bounces report --json``: notices by verdict, bounces by class and reason, the recipient domains, the
        unproven count; over the whole log the newest notices kept for a person too.
        ---
        summary: The bounce report
        parameters:
          - {name: issue, in: query, schema: {type: string}, description: "only notices about this issue (its date)"}
        responses:
          200:
            description: "{issue, by_kind, by_class, by_reason, ignored, unproven, by_domain, for_a_person}"
            content:
              application/json:
                schema:
                  type: object
                  properties:
                    by_kind: {type: object, additionalProperties: {type: integer}}
                    by_class: {type: object, additionalProperties: {type: integer}}
                    by_reason:
                      type: array
                      description: Sisimai's reasons, most first, bounces hard and soft apart and complaints
                      items:
                        type: object
                        properties:
                          reason: {type: string}
                          hard: {type: integer}
                          soft: {type: integer}
                          complaints: {type: integer}
        """
        issue = request.query_params.get("issue", "")[:SLUG_MAX]
        found = await self.a.db(bounce_report, issue or None)
        return AsciiJSON(found.as_json())
