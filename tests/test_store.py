"""The store: migrations from empty and re-run, on SQLite and PostgreSQL; the audience rules on both."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from newsletter import audience, store
from newsletter.errors import AudienceError
from newsletter.store import tables as t

from .conftest import AREAS


@pytest.fixture
def engine(db_url):
    engine = store.engine_for(db_url)
    store.migrate(engine)
    yield engine
    engine.dispose()


def test_migrate_from_empty_then_again(db_url):
    """Migrating an empty database reaches the head; migrating again changes nothing."""
    engine = store.engine_for(db_url)
    assert store.migrate(engine) == (None, store.head_revision())
    assert store.migrate(engine) == (store.head_revision(), store.head_revision())
    with engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) >= {"subscribers", "outbox", "suppressions", "issues"}
    engine.dispose()


def test_the_head_every_command_checks_is_alembics_newest_migration():
    """store.HEAD (read without importing Alembic) names the newest revision in migrations/versions."""
    assert store.HEAD == store.head_revision()


def test_migrations_create_exactly_the_tables_module(engine):
    """The schema the migrations build is the one tables.py declares (no drift between the two), but for the
    search index SQLAlchemy has no words for (migration 0008), which is there on both databases."""
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"include_name": t.ours}), t.metadata)
        if conn.dialect.name == "sqlite":
            made = conn.scalar(sa.text(f"SELECT count(*) FROM sqlite_master WHERE name = '{t.SEARCH_TABLE}'"))
        else:
            made = conn.scalar(sa.text("SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() "
                                       "AND indexname LIKE '%\\_trgm'"))
    assert diff == [] and made


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    """SQLite files are opened in WAL mode with foreign keys enforced."""
    engine = store.engine_for(f"sqlite:///{tmp_path / 'x.db'}")
    store.migrate(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_connect_refuses_a_postgresql_database_behind_the_code(pg_url):
    """On PostgreSQL a database that was never migrated is refused with a hint to run init."""
    engine = store.engine_for(pg_url)
    with pytest.raises(store.DatabaseError, match="run `newsletter init`"):
        store.connect(engine)
    engine.dispose()


def test_unreachable_database_is_one_line_error():
    """A database that cannot be reached gives a one-line error naming it, password hidden."""
    engine = store.engine_for("postgresql+psycopg://u:hunter2@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(store.DatabaseError) as info:
        store.connect(engine)
    assert "127.0.0.1:1" in str(info.value) and "hunter2" not in str(info.value) and "\n" not in str(info.value)


def test_email_is_unique_without_regard_to_case(engine):
    """The same address in another case is the same subscriber."""
    with engine.begin() as conn:
        audience.add(conn, "Ada@Example.org", "Ada", "", AREAS)
        with pytest.raises(AudienceError, match="already on the list"):
            audience.add(conn, "ada@example.ORG", "Ada", "", AREAS)
        assert audience.get(conn, "ADA@example.org").email == "Ada@example.org"


def test_erased_address_is_suppressed_by_hash_only(engine, tmp_path):
    """Erasure leaves no address anywhere, yet a later import does not bring the address back."""
    with engine.begin() as conn:
        sub = audience.add(conn, "gone@example.org", "Gone Person", "RL", AREAS)
        now = datetime.now(UTC)
        iid = conn.execute(t.issues.insert().values(slug="2026-05-17", title="x", state="sent", created_at=now)
                           .returning(t.issues.c.id)).scalar_one()
        oid = conn.execute(t.outbox.insert().values(
            issue_id=iid, subscriber_id=sub.id, email=sub.email, name=sub.name, group_key="rl", state="failed",
            attempts=1, created_at=now, updated_at=now, last_answer="550 <gone@example.org> unknown")
            .returning(t.outbox.c.id)).scalar_one()
        conn.execute(t.delivery_attempts.insert().values(outbox_id=oid, at=now, code=550, outcome="failed",
                                                         answer="550 <gone@example.org> unknown"))
        audience.delete(conn, "GONE@example.org")
    with engine.connect() as conn:
        dump = " ".join(str(v) for table in t.metadata.sorted_tables
                        for row in conn.execute(sa.select(table)) for v in row)
        assert "gone@example.org" not in dump.casefold() and "Gone Person" not in dump
        assert conn.scalar(sa.select(sa.func.count()).select_from(t.outbox)) == 1  # the log's count stays
    csv_file = tmp_path / "again.csv"
    csv_file.write_text("email,name,areas\ngone@example.org,Back,\n", encoding="utf-8")
    with engine.begin() as conn:
        result = audience.import_csv(conn, csv_file, AREAS)
        assert (result.added, result.suppressed) == (0, 1)
        assert audience.get(conn, "gone@example.org") is None


def test_import_never_reactivates_inactive_subscribers(engine, tmp_path):
    """Unsubscribed, bounced and blocked subscribers stay so after re-import; active ones update."""
    with engine.begin() as conn:
        for email in ("u@example.org", "b@example.org", "k@example.org", "a@example.org"):
            audience.add(conn, email, "", "", AREAS)
        audience.unsubscribe(conn, "u@example.org")
        audience.mark_bounced(conn, audience.get(conn, "b@example.org").id, datetime.now(UTC))
        conn.execute(t.subscribers.update().where(t.subscribers.c.email == "k@example.org").values(status="blocked"))
    csv_file = tmp_path / "all.csv"
    csv_file.write_text("email,name,areas\n" + "".join(f"{c}@example.org,New {c},RL\n" for c in "ubka"),
                        encoding="utf-8")
    with engine.begin() as conn:
        result = audience.import_csv(conn, csv_file, AREAS)
        assert (result.not_reactivated, result.updated) == (3, 1)
        statuses = {s.email: s.status for s in audience.listing(conn, AREAS).subscribers}
    assert statuses == {"u@example.org": "unsubscribed", "b@example.org": "bounced",
                        "k@example.org": "blocked", "a@example.org": "active"}


def test_enqueue_gives_each_active_subscriber_their_group_and_skips_who_meets_no_paper(engine):
    """The outbox gets one row per active subscriber, in id order, each with the group key_for gives it;
    a subscriber whose areas meet no paper is `skipped` with the reason, and inactive ones get no row."""
    from newsletter import lifecycle
    from newsletter.send import outbox

    areas = {"all@example.org": "", "rl@example.org": "RL", "none@example.org": "Agents",
             "two@example.org": "LLM;Vision", "gone@example.org": "RL"}
    with engine.begin() as conn:
        for email, chosen in areas.items():
            audience.add(conn, email, email.split("@")[0], chosen, AREAS)
        audience.unsubscribe(conn, "gone@example.org")
        now = datetime.now(UTC)
        iid = lifecycle.create_issue(conn, "2026-05-17", "x", now)
        key_for = {"": "all", "RL": "rl", "Agents": None, "LLM;Vision": "llm+vision"}.__getitem__
        counts = outbox.enqueue(conn, iid, key_for, now)
    assert counts == outbox.Counts(queued=3, skipped=1)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.outbox.c.email, t.outbox.c.group_key, t.outbox.c.state, t.outbox.c.reason)
                            .order_by(t.outbox.c.id)).all()
    assert [tuple(r) for r in rows] == [
        ("all@example.org", "all", "queued", None), ("rl@example.org", "rl", "queued", None),
        ("none@example.org", "", "skipped", outbox.NO_MATCH), ("two@example.org", "llm+vision", "queued", None)]


def test_statements_run_on_the_cursor_store_what_core_stores(engine):
    """Rows written on the DBAPI cursor (an imported subscriber, a message's `sending` mark) read back
    through Core with the same datetimes, and Core's comparisons on them hold."""
    from datetime import timedelta

    from newsletter import lifecycle
    from newsletter.audience import csvio
    from newsletter.clock import aware
    from newsletter.send import outbox

    now = datetime(2026, 5, 17, 9, 30, 15, 123456, tzinfo=UTC)
    lease = timedelta(minutes=5)
    with engine.begin() as conn:
        csvio._IMPORTED.run_many(conn, [{"email": "a@example.org", "email_key": "a@example.org", "name": "A",
                                            "areas": "RL"}], {"now": now})
        assert conn.scalar(sa.select(t.subscribers.c.status).where(t.subscribers.c.created_at == now)) == "active"
        iid = lifecycle.create_issue(conn, "2026-05-17", "x", now)
        outbox.enqueue(conn, iid, lambda areas: "rl", now)
        (row,) = outbox.claim(conn, iid, "w1", 10, lease, now)
        assert not outbox.begin(conn, row.id, "w2", lease, now, "<other@example.org>")  # not w2's claim
        assert outbox.begin(conn, row.id, "w1", lease, now, "<m1@example.org>")
        o = t.outbox.c
        held = conn.scalar(sa.select(sa.func.count()).where(o.lease_until > now, o.lease_until < now + 2 * lease))
        got = conn.execute(sa.select(o.state, o.attempts, o.message_id, o.updated_at, o.lease_until)).one()
    assert held == 1
    assert got[:3] == ("sending", 1, "<m1@example.org>")
    assert aware(got.updated_at) == now and aware(got.lease_until) == now + lease
