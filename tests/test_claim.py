"""The claim on PostgreSQL reads about the rows it takes, whatever else the outbox holds (#16)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from newsletter import store
from newsletter.clock import utcnow
from newsletter.send import outbox


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", ()) for n in nodes(child))]


def test_a_claim_walks_the_partial_index_and_stops_at_its_limit(pg_url):
    """With an earlier issue's 40,000 rows and 15,000 of this issue's already sent ahead of its 5,000 due ones, a
    claim of 50 reads its rows from ix_outbox_due in id order: no sort, and about 50 index rows read."""
    engine = store.engine_for(pg_url)
    store.migrate(engine)
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO issues (id, slug, title, state, created_at) VALUES "
                             "(1, 'old', 'old', 'sent', :now), (2, 'new', 'new', 'sending', :now)"), {"now": now})
        conn.execute(sa.text(
            "INSERT INTO outbox (issue_id, email, name, group_key, state, attempts, created_at, updated_at) "
            "SELECT CASE WHEN n <= 40000 THEN 1 ELSE 2 END, 'r' || n || '@example.org', '', 'all', "
            "CASE WHEN n <= 55000 THEN 'sent' ELSE 'queued' END, 0, :now, :now FROM generate_series(1, 60000) n"),
            {"now": now})
        conn.execute(sa.text("ANALYZE outbox"))
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("UPDATE OUTBOX"):
            seen.append((statement, parameters))

    with engine.connect() as conn:  # the claim as a worker makes it, then undone to be measured from the start
        sa.event.listen(engine, "before_cursor_execute", capture)
        taken = outbox.claim(conn, 2, "w:1:0", 50, timedelta(seconds=60), now)
        sa.event.remove(engine, "before_cursor_execute", capture)
        conn.rollback()
        statement, parameters = seen[0]
        explained = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters).scalar_one()
        conn.rollback()
    engine.dispose()
    plan = nodes((explained if isinstance(explained, list) else json.loads(explained))[0]["Plan"])
    scans = [n for n in plan if n.get("Index Name") == "ix_outbox_due"]
    assert len(taken) == 50 and [r.id for r in taken] == list(range(55001, 55051))
    assert scans and scans[0]["Actual Rows"] <= 60 and scans[0].get("Rows Removed by Filter", 0) <= 10
    assert not [n for n in plan if n["Node Type"] == "Sort"]
