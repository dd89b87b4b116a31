"""The API's OpenAPI 3 document: Starlette's SchemaGenerator reads each endpoint's docstring (the YAML after
``---``); this adds what a docstring should not have to repeat and the generator leaves out, so the document
is valid as it stands (tests/test_console_bounces.py checks it with openapi-spec-validator):

- ``servers``: the API is mounted at ``/api``, and its paths (``/v1/…``) are relative to that;
- each path parameter a route declares (``{sid:int}``), typed from its converter, where the docstring does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.convertors import FloatConvertor, IntegerConvertor
from starlette.routing import BaseRoute, Route
from starlette.schemas import SchemaGenerator

MOUNT = "/api"


def document(generator: SchemaGenerator, routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The document for ``routes``, with the server and every path parameter filled in."""
    doc = generator.get_schema(routes=list(routes))
    doc.setdefault("servers", [{"url": MOUNT}])
    for route in routes:
        if isinstance(route, Route) and route.include_in_schema and route.param_convertors:
            for operation in doc.get("paths", {}).get(route.path_format, {}).values():
                _declare(operation, route)
    return doc


def _declare(operation: dict[str, Any], route: Route) -> None:
    """Add the route's path parameters the operation does not list (a docstring's own description wins)."""
    listed = {(p.get("name"), p.get("in")) for p in operation.get("parameters", [])}
    for name, convertor in route.param_convertors.items():
        if (name, "path") not in listed:
            kind = "integer" if isinstance(convertor, IntegerConvertor) else \
                "number" if isinstance(convertor, FloatConvertor) else "string"
            operation.setdefault("parameters", []).append(
                {"name": name, "in": "path", "required": True, "schema": {"type": kind}})
