"""Statements SQLAlchemy compiles once per dialect and that then run straight on the DBAPI cursor.

For the few statements run once per message or per imported row, where Core's per-execution work
(cache key, execution context, parameter processing, result object) costs more than the statement:
measured on the benchmark's SQLite database (WAL), the three per-message statements of a send and
their commit took 180 µs of CPU through ``Connection.execute`` and 37 µs on the cursor; an
imported subscriber's insert took 14.8 µs through Core's executemany and 9.6 µs here.
SQLAlchemy still writes the SQL for each dialect and converts datetimes with its own bind
processor, so what is stored is what Core stores everywhere else (a test reads it back by Core).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import tables as t

# per dialect: the SQL, the statement's own bound values, the positional order (None: named), the
# datetime bind processor (None: the driver takes datetimes as they are)
_Compiled = tuple[str, dict[str, Any], tuple[str, ...] | None, Callable[[Any], Any] | None]
_Args = Callable[[Mapping[str, Any]], Any]


class OnCursor:
    """One statement with named bind parameters; ``run`` or ``run_many`` it on a connection.

    With ``wrap_errors``, ``run`` and ``run_many`` raise what ``Connection.execute`` would where the database
    refuses (SQLAlchemy's ``DBAPIError`` kinds, the driver's own error as ``orig``), for callers that tell a
    database's refusal from their own failures (``bounces fetch`` leaves a notice it could not store in the
    mailbox; the click writer keeps a refused batch for the next); without it the driver's error comes as it
    is, as the send engine has always had it."""

    def __init__(self, statement: sa.sql.expression.UpdateBase, *, wrap_errors: bool = False) -> None:
        self.statement = statement
        self.wrap_errors = wrap_errors
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, dialect: sa.Dialect) -> _Compiled:
        if dialect.name not in self._compiled:
            compiled = self.statement.compile(dialect=dialect)
            order = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
            when = t.When.dialect_impl(dialect).bind_processor(dialect)
            self._compiled[dialect.name] = (compiled.string, dict(compiled.params), order, when)
        return self._compiled[dialect.name]

    def run(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Execute with ``params`` (datetimes as they are); the number of rows it changed."""
        sql, args = self._prepare(conn.dialect, {})
        values = args(params)
        cursor = conn.connection.cursor()
        try:
            cursor.execute(sql, values)
            return cursor.rowcount
        except conn.dialect.loaded_dbapi.Error as exc:
            if not self.wrap_errors:
                raise
            raise _wrapped(conn, sql, values, exc) from exc
        finally:
            cursor.close()

    def run_many(self, conn: Connection, rows: Iterable[Mapping[str, Any]], shared: Mapping[str, Any]) -> None:
        """Execute once per row; ``shared`` values (the same for every row) are converted only once."""
        sql, args = self._prepare(conn.dialect, shared)
        values = [args(row) for row in rows]
        cursor = conn.connection.cursor()
        try:
            cursor.executemany(sql, values)
        except conn.dialect.loaded_dbapi.Error as exc:
            if not self.wrap_errors:
                raise
            raise _wrapped(conn, sql, values, exc) from exc
        finally:
            cursor.close()


    def _prepare(self, dialect: sa.Dialect, shared: Mapping[str, Any]) -> tuple[str, _Args]:
        """The SQL, and what turns one row's values into the driver's parameters (a tuple or a dict)."""
        sql, defaults, order, when = self._for(dialect)
        base = {**defaults, **(_converted(shared, when) if when else shared)}

        def args(row: Mapping[str, Any]) -> Any:
            values = {**base, **(_converted(row, when) if when else row)}
            return tuple(values[name] for name in order) if order else values

        return sql, args


def _wrapped(conn: Connection, sql: str, values: Any, exc: Exception) -> Exception:
    """The driver's error as ``Connection.execute`` would raise it (``wrap_errors``)."""
    return sa.exc.DBAPIError.instance(sql, values, exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect)


def _converted(values: Mapping[str, Any], when: Callable[[Any], Any]) -> dict[str, Any]:
    return {name: when(value) if isinstance(value, datetime) else value for name, value in values.items()}
