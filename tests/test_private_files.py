"""Files that hold addresses are readable by their owner only: the database, exports, captured mail."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.smtp import Envelope

from newsletter import audience, store
from newsletter.config import load_config
from newsletter.mailsink import EmlHandler

from .conftest import AREAS, REPO, invoke


@pytest.fixture(autouse=True)
def _usual_umask() -> Iterator[None]:
    """The common umask 022, so a file made with default permissions would be world-readable (0644)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_sqlite_database_and_its_wal_and_shm_files_are_owner_only(tmp_path):
    """The engine creates the database 0600, and SQLite's -wal and -shm files follow it."""
    db = tmp_path / "newsletter.db"
    engine = store.engine_for(f"sqlite:///{db}")
    store.migrate(engine)
    with engine.connect() as conn:  # held open: the -wal and -shm files exist meanwhile
        assert store.current_revision(conn) == store.HEAD
        files = [db, tmp_path / "newsletter.db-wal", tmp_path / "newsletter.db-shm"]
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    engine.dispose()


def test_an_existing_database_keeps_the_mode_its_owner_gave_it(tmp_path):
    """A database file that already exists is opened as it is: its mode (0640 here) is left alone."""
    db = tmp_path / "shared.db"
    sqlite3.connect(db).close()
    os.chmod(db, 0o640)
    engine = store.engine_for(f"sqlite:///{db}")
    store.migrate(engine)
    engine.dispose()
    assert mode(db) == 0o640


def test_subscribers_export_file_is_owner_only(make_config, runner, tmp_path):
    """`newsletter subscribers export FILE` writes FILE 0600, also over an older 0644 file."""
    config_path = make_config()
    config = load_config(config_path)
    engine = store.engine_for(config.database_url)
    store.migrate(engine)
    with engine.begin() as conn:
        audience.add(conn, "ada@example.org", "Ada", "", AREAS, source="cli", status="active")
    engine.dispose()
    out = tmp_path / "list.csv"
    out.write_text("old\n")
    os.chmod(out, 0o644)
    invoke(runner, config_path, "subscribers", "export", str(out))
    assert "ada@example.org" in out.read_text() and mode(out) == 0o600


def test_captured_eml_files_are_owner_only(tmp_path):
    """The mail sink's .eml files (the demo's build/demo/mail) are 0600 in a 0700 folder."""
    folder = tmp_path / "mail"
    handler = EmlHandler(folder)
    envelope = Envelope()
    envelope.rcpt_tos = ["ada@example.org"]
    envelope.original_content = b"To: ada@example.org\r\n\r\nhello\r\n"
    handler.store(envelope)
    (eml,) = folder.glob("*.eml")
    assert eml.read_bytes().startswith(b"Return-Path: <>\r\nTo: ada@") and mode(eml) == 0o600 and mode(folder) == 0o700


def test_the_demo_leaves_no_file_readable_by_others(runner, tmp_path):
    """After `newsletter demo`, no file in its output folder (database, .eml files) is readable by group or others."""
    out = tmp_path / "demo"
    invoke(runner, REPO / "config.toml", "demo", "--out", str(out))
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len([p for p in files if p.suffix == ".eml"]) > 1 and out / "newsletter.db" in files
    assert {p.name: oct(mode(p)) for p in files if mode(p) & 0o077} == {}
