"""Indexed substring search of addresses and names (audience/search.py): on SQLite an FTS5 table with the
trigram tokenizer over subscribers' email_key and name, kept in step by triggers; on PostgreSQL pg_trgm GIN
indexes on email_key and lower(name). At 1,000,000 subscribers a rare piece of an address took 300-430 ms by a
full scan and takes 0.1-2 ms through these (bench/subscribers_search.py).

The price is at writing: importing 100,000 rows into SQLite took 10.6 s with the triggers against 6.4 s without
(42 us a row; FTS5's automerge and hashsize settings changed nothing), and the FTS5 table holds 138 MB at 1M
subscribers (the rest of the file: 256 MB); the PostgreSQL indexes hold 79 MB.

A later migration that rebuilds ``subscribers`` on SQLite (Alembic's batch mode copies the table and drops the old
one) drops these triggers with it: it must run ``SQLITE[1:]`` again after the copy (the rebuild included).

Neither is in tables.py's metadata (SQLAlchemy has no words for them; ``tables.ours`` leaves them out of the
comparison). Where the index cannot be made (an SQLite without FTS5's trigram tokenizer, a PostgreSQL role that
may not create pg_trgm) the migration says so and goes on: search then reads every row, as before.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

import logging

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

log = logging.getLogger("newsletter.store")

FTS = "subscribers_search"
SQLITE = [
    f"CREATE VIRTUAL TABLE {FTS} USING fts5(email_key, name, content='subscribers', content_rowid='id', "
    "tokenize='trigram', columnsize=0)",
    f"CREATE TRIGGER {FTS}_insert AFTER INSERT ON subscribers BEGIN "
    f"INSERT INTO {FTS}(rowid, email_key, name) VALUES (new.id, new.email_key, new.name); END",
    f"CREATE TRIGGER {FTS}_delete AFTER DELETE ON subscribers BEGIN "
    f"INSERT INTO {FTS}({FTS}, rowid, email_key, name) VALUES ('delete', old.id, old.email_key, old.name); END",
    # a status change (the most common update) touches neither column: only a new address or name re-indexes
    f"CREATE TRIGGER {FTS}_update AFTER UPDATE OF email_key, name ON subscribers BEGIN "
    f"INSERT INTO {FTS}({FTS}, rowid, email_key, name) VALUES ('delete', old.id, old.email_key, old.name); "
    f"INSERT INTO {FTS}(rowid, email_key, name) VALUES (new.id, new.email_key, new.name); END",
    f"INSERT INTO {FTS}({FTS}) VALUES ('rebuild')",
]
PG_INDEXES = {"ix_subscribers_email_key_trgm": "email_key", "ix_subscribers_name_trgm": "lower(name)"}


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        _sqlite(conn)
    elif conn.dialect.name == "postgresql":
        _postgresql(conn)


def _sqlite(conn: sa.Connection) -> None:
    try:
        conn.exec_driver_sql(f"CREATE VIRTUAL TABLE temp.{FTS}_probe USING fts5(x, tokenize='trigram')")
        conn.exec_driver_sql(f"DROP TABLE temp.{FTS}_probe")
    except sa.exc.OperationalError as exc:
        log.warning("SQLite %s has no FTS5 trigram tokenizer (%s): subscriber search reads every row",
                    conn.exec_driver_sql("SELECT sqlite_version()").scalar(), exc.orig)
        return
    for statement in SQLITE:
        conn.exec_driver_sql(statement)


def _postgresql(conn: sa.Connection) -> None:
    schema = _trgm_schema(conn)
    if schema is None:
        return
    for name, column in PG_INDEXES.items():
        conn.exec_driver_sql(f'CREATE INDEX {name} ON subscribers USING gin ({column} "{schema}".gin_trgm_ops)')


def _trgm_schema(conn: sa.Connection) -> str | None:
    """The schema pg_trgm lives in, creating it in ``public`` if it is not there (it is trusted since PostgreSQL
    13: a database owner may). One database holds it once, whichever schema the tables are in."""
    found = "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm'"
    schema = conn.exec_driver_sql(found).scalar()
    if schema is not None:
        return str(schema).strip('"')
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
    except sa.exc.DBAPIError as exc:
        log.warning("cannot create the pg_trgm extension (%s): subscriber search reads every row; a superuser can "
                    "run CREATE EXTENSION pg_trgm and then `newsletter init` again after a downgrade to 0007",
                    str(exc.orig).strip().splitlines()[0])
        return None
    return conn.exec_driver_sql(found).scalar()


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        for suffix in ("insert", "delete", "update"):
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {FTS}_{suffix}")
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {FTS}")
    elif conn.dialect.name == "postgresql":
        for name in PG_INDEXES:
            conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
