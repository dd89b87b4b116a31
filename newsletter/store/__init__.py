"""The database: engines, the schema's migrations, and the small ``meta`` key/value table.

SQLite by default (a file next to config.toml, in WAL mode so readers never wait on the writer);
``[database] url`` may name PostgreSQL instead, and every query in the project runs on both.

``newsletter init`` (``migrate``) brings a database to the latest schema and is harmless twice.
Other commands call ``connect``: on SQLite it migrates on the spot (one machine, one writer),
on PostgreSQL it refuses a database that is behind, because several workers starting together
must not race to migrate it; there an operator runs ``newsletter init`` once.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from ..errors import ConfigError, DatabaseError
from . import tables

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

# The newest migration. Every command checks the database against it, and only a database behind
# it needs Alembic, whose import (with Mako and Pygments) costs 0.2 s a command. A test checks it
# against Alembic's own script directory.
HEAD = "0010"

MIGRATIONS = Path(__file__).with_name("migrations")

__all__ = ["engine_for", "connect", "migrate", "current_revision", "head_revision", "meta_get", "meta_secret",
           "meta_claim", "meta_put", "tables"]


def engine_for(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout on every connection."""
    try:
        if url.startswith("sqlite"):
            engine = sa.create_engine(url, connect_args={"timeout": 30})
            sa.event.listen(engine, "do_connect", _private_sqlite_file)
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return sa.create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError) as exc:
        raise ConfigError(f"database.url: cannot use {_redact(url)!r}: {exc}") from None


def _private_sqlite_file(dialect: object, _record: object, cargs: tuple[object, ...], _cparams: object) -> None:
    """Create a new database file readable by its owner only (0600); SQLite gives its -wal and -shm
    files the database's mode. SQLite alone made it 0644: every address readable by every local user.
    An existing file keeps the mode its owner gave it.
    """
    path = cargs[0] if cargs else None
    if not isinstance(path, str) or path in ("", ":memory:") or path.startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return
    except OSError:
        return  # no folder yet, say: SQLite reports it with its own words
    os.chmod(path, 0o600)  # whatever the umask


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: object) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes; WAL makes it safe
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable url>"


def _alembic() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic()).get_current_head() or ""


def current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _stored_revision(conn: Connection) -> str | None:
    """The revision in Alembic's version table, read without importing Alembic; None without one."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.scalar(sa.text("SELECT version_num FROM alembic_version"))


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to the latest schema; return (revision before, revision after)."""
    _ensure_sqlite_folder(engine)
    try:
        with engine.begin() as conn:
            before = current_revision(conn)
            from alembic import command

            cfg = _alembic()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            return before, current_revision(conn) or ""
    except OperationalError as exc:
        raise DatabaseError(f"database {_redact(str(engine.url))}: {_first_line(exc)}") from None


def connect(engine: Engine) -> Engine:
    """Check the database is reachable and at the latest schema (migrating SQLite on the spot)."""
    try:
        with engine.connect() as conn:
            current = _stored_revision(conn)
    except OperationalError as exc:
        raise DatabaseError(f"database {_redact(str(engine.url))}: {_first_line(exc)}") from None
    if current == HEAD:
        return engine
    if engine.dialect.name == "sqlite":
        migrate(engine)
        return engine
    raise DatabaseError(f"database {_redact(str(engine.url))} is at schema {current or 'none'}, "
                        f"this version needs {head_revision()}: run `newsletter init`")


def _ensure_sqlite_folder(engine: Engine) -> None:
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)


def _first_line(exc: SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", exc)).strip().splitlines()[0]


def meta_get(conn: Connection, key: str) -> str | None:
    return conn.scalar(sa.select(tables.meta.c.value).where(tables.meta.c.key == key))


def meta_secret(conn: Connection, key: str) -> str:
    """A random secret kept in the database, made on first use (e.g. the suppression-hash key).

    Insert-or-ignore then read, so two processes asking at once end up with the same value.
    """
    value = meta_get(conn, key)
    if value is None:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(insert(tables.meta).values(key=key, value=secrets.token_hex(32)).on_conflict_do_nothing())
        value = meta_get(conn, key)
    assert value is not None
    return value


def meta_claim(conn: Connection, key: str, value: str) -> str:
    """``key``'s value, set to ``value`` if it had none: of two processes claiming at once, the first wins.

    Read first: most calls find it set, and a read takes no write lock on SQLite.
    """
    claimed = meta_get(conn, key)
    if claimed is None:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(insert(tables.meta).values(key=key, value=value).on_conflict_do_nothing())
        claimed = meta_get(conn, key)
    assert claimed is not None
    return claimed


def meta_put(conn: Connection, key: str, value: str) -> None:
    """Set ``key`` to ``value``, whatever it was."""
    conn.execute(sa.delete(tables.meta).where(tables.meta.c.key == key))
    conn.execute(sa.insert(tables.meta).values(key=key, value=value))


def keyset_pages(conn: Connection, query: sa.Select[Any], key: sa.ColumnElement[int],
                 size: int = 1000) -> Iterator[Sequence[sa.Row[Any]]]:
    """``query``'s rows in pages of ``size``, ordered by ``key``, each page after the last one's key: never the
    whole table in memory, and no page costs more than the first (no OFFSET). ``key`` must be among the columns."""
    page = query.order_by(key).limit(size)
    last: int | None = None
    while True:
        rows = conn.execute(page if last is None else page.where(key > last)).all()
        if rows:
            yield rows
        if len(rows) < size:
            return
        last = rows[-1]._mapping[key]
