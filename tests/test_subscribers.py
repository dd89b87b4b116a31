"""`newsletter init` and `newsletter subscribers …` through the CLI, on SQLite files (imports on PostgreSQL too)."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter import audience, store
from newsletter.audience import search as audience_search
from newsletter.cli import base as cli_base
from newsletter.cli import cli
from newsletter.store import tables as t

from .conftest import AREAS, REPO

SAMPLE = REPO / "subscribers" / "sample.csv"


@pytest.fixture
def nl(make_config, runner):
    """Run `newsletter --config <tmp config> ARGS…` and return the result."""
    config = make_config()

    def run(*args: str, code: int | None = 0):
        result = runner.invoke(cli, ["--config", str(config), *args])
        if code is not None:
            assert result.exit_code == code, result.output
        return result

    run.db = config.parent / "newsletter.db"  # type: ignore[attr-defined]
    return run


@pytest.fixture
def nl_any(db_url, make_config, runner):
    """`nl` on a real SQLite file and on a real PostgreSQL schema: the import writes differently on each."""
    config = make_config(f'[database]\nurl = "{db_url}"\n')

    def run(*args: str, code: int | None = 0):
        result = runner.invoke(cli, ["--config", str(config), *args])
        if code is not None:
            assert result.exit_code == code, result.output
        return result

    run.db = db_url  # type: ignore[attr-defined]
    run("init")  # a PostgreSQL schema is not made on first use, as an SQLite file is
    return run


def rows(db: Path | str) -> dict[str, tuple[str, str, str]]:
    engine = store.engine_for(db if isinstance(db, str) else f"sqlite:///{db}")
    with engine.connect() as conn:
        found = {r.email: (r.name, r.areas, r.status) for r in conn.execute(sa.select(t.subscribers))}
    engine.dispose()
    return found


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_init_creates_then_is_harmless(nl):
    """init builds the schema once and says it is up to date the second time."""
    assert f"schema empty -> {store.head_revision()}" in nl("init").output
    assert "up to date" in nl("init").output
    assert rows(nl.db) == {}


def test_sample_list_imports_with_varied_choices(nl_any):
    """The sample list holds ~25 subscribers with single areas, pairs, triples and no choice."""
    out = nl_any("subscribers", "import", str(SAMPLE)).output
    assert "added 25" in out and "rejected 0" in out
    areas = [a for _, a, _ in rows(nl_any.db).values()]
    sizes = {len([x for x in a.split(";") if x]) for a in areas}
    assert sizes == {0, 1, 2, 3} and {"LLM", "Vision", "RL", "Agents"} <= set(areas)
    assert all(e.endswith(("@example.org", "@example.com")) for e in rows(nl_any.db))


def test_list_counts_match_the_import(nl):
    """`list` shows counts by status and area that match what was imported, and filters."""
    nl("subscribers", "import", str(SAMPLE))
    with SAMPLE.open(encoding="utf-8") as handle:
        sample = list(csv.DictReader(handle))
    gets = lambda area: sum(1 for r in sample if not r["areas"] or area in r["areas"].split(";"))  # noqa: E731
    out = nl("subscribers", "list", "--limit", "500").output
    assert f"active {len(sample)}" in out
    assert f"LLM {gets('LLM')}, Vision {gets('Vision')}, RL {gets('RL')}, Agents {gets('Agents')}" in out
    rl = nl("subscribers", "list", "--area", "rl", "--limit", "500").output
    assert f"{gets('RL')} matching" in rl
    nl("subscribers", "unsubscribe", sample[0]["email"])
    assert "1 matching" in nl("subscribers", "list", "--status", "unsubscribed").output


def test_add_set_areas_unsubscribe_delete(nl):
    """Each single-subscriber command changes exactly that subscriber, and says so."""
    assert "Added ada@example.org (LLM, RL)" in nl("subscribers", "add", "ada@example.org", "--name", "Ada",
                                                   "--areas", "llm,RL").output
    nl("subscribers", "set-areas", "ADA@example.org", "Agents")
    assert rows(nl.db)["ada@example.org"] == ("Ada", "Agents", "active")
    nl("subscribers", "set-areas", "ada@example.org", "all")
    assert rows(nl.db)["ada@example.org"][1] == ""
    assert "unsubscribed" in nl("subscribers", "unsubscribe", "ada@example.org").output
    nl("subscribers", "delete", "ada@example.org", "--yes")
    assert rows(nl.db) == {}
    refused = nl("subscribers", "add", "ada@example.org", code=1)
    assert "suppression list" in refused.output


@pytest.mark.parametrize(("args", "message"), [
    (("add", "not-an-address"), "invalid address 'not-an-address'"),
    (("add", "x@example.org", "--areas", "NLP"), "unknown area 'NLP'"),
    (("add", "x@example.org", "--name", "Eve\r\nBcc: all@example.org"), "control character (U+000D)"),
    (("set-areas", "nobody@example.org", "LLM"), "nobody@example.org: not on the list"),
    (("unsubscribe", "nobody@example.org"), "not on the list"),
    (("delete", "nobody@example.org", "--yes"), "not on the list"),
])
def test_bad_single_commands_are_one_line_errors(nl, args, message):
    """A bad address, area or name, or an unknown subscriber, is one line naming it; nothing changes."""
    result = nl("subscribers", *args, code=1)
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_export_imports_back_to_the_same_list(nl, tmp_path, make_config, runner):
    """An exported file, imported into an empty database, gives the same list."""
    tricky = write_csv(tmp_path / "tricky.csv", 'email,name,areas\n"q@example.com","Quote ""Q"", Jr.",RL;LLM\n'
                       "z@example.com,Zoë Ünïcode,\n")
    nl("subscribers", "import", str(SAMPLE))
    nl("subscribers", "import", str(tricky))
    out = tmp_path / "out.csv"
    nl("subscribers", "export", str(out))
    assert nl("subscribers", "export").output.replace("\r\n", "\n") == out.read_text(encoding="utf-8").replace(
        "\r\n", "\n")
    other = make_config(f'[database]\nurl = "sqlite:///{tmp_path / "other.db"}"\n', name="other.toml")
    assert runner.invoke(cli, ["--config", str(other), "subscribers", "import", str(out)]).exit_code == 0
    assert rows(tmp_path / "other.db") == rows(nl.db)
    assert rows(nl.db)["q@example.com"] == ('Quote "Q", Jr.', "LLM;RL", "active")


def test_reimport_is_idempotent_and_updates(nl_any, tmp_path):
    """Importing again adds nothing; changed names and areas are updated."""
    nl_any("subscribers", "import", str(SAMPLE))
    before = rows(nl_any.db)
    assert "added 0, updated 0, unchanged 25" in nl_any("subscribers", "import", str(SAMPLE)).output
    assert rows(nl_any.db) == before
    first = next(iter(before))
    write_csv(tmp_path / "upd.csv", f"email,name,areas\n{first.upper()},Renamed,Vision\n")
    assert "updated 1" in nl_any("subscribers", "import", str(tmp_path / "upd.csv")).output
    assert rows(nl_any.db)[first] == ("Renamed", "Vision", "active")


BAD_ROWS = (
    "email,name,areas\n"
    "good1@example.org,Good One,LLM\n"          # line 2
    "not-an-address,Bad,LLM\n"                  # line 3
    "bad-area@example.org,Bad,NLP\n"            # line 4
    '"crlf@example.org","Eve\r\nBcc: x",RL\n'   # line 5 (the quoted name spans lines 5-6)
    "GOOD1@example.org,Dup,RL\n"                # line 7
    "short@example.org,Short\n"                 # line 8
    "good2@example.org,Good Two,\n"             # line 9
    "ctl@example.org,Bell\x07,RL\n"             # line 10
)


def test_bad_rows_are_reported_by_line_and_good_rows_imported(nl_any, tmp_path):
    """Every kind of bad row is named with its line and reason; the good rows land; exit 1."""
    result = nl_any("subscribers", "import", str(write_csv(tmp_path / "bad.csv", BAD_ROWS)), code=1)
    out = result.output
    for line, reason in [(3, "invalid address 'not-an-address'"), (4, "unknown area 'NLP'"),
                         (5, "name holds a control character (U+000D)"), (7, "duplicate of line 2"),
                         (8, "missing column 'areas'"), (10, "name holds a control character (U+0007)")]:
        assert f"bad.csv: line {line}: {reason}" in out
    assert "added 2" in out and "rejected 6" in out
    assert set(rows(nl_any.db)) == {"good1@example.org", "good2@example.org"}


def test_duplicates_are_found_across_batches_with_the_line_of_the_first(nl_any, tmp_path):
    """An address repeated thousands of lines later (past the 1,000-row batches, in another case) is
    rejected with the line it first came on; everyone else is imported once."""
    lines = ["email,name,areas"] + [f"r{i}@example.org,R {i},RL" for i in range(2500)]
    lines[2400] = "R3@Example.org,Again,RL"     # file line 2401 repeats line 5 (r3)
    lines[1500] = "r1498@example.org,Twin,RL"   # file line 1501 repeats line 1500, in the same batch
    out = nl_any("subscribers", "import", str(write_csv(tmp_path / "big.csv", "\n".join(lines) + "\n")), code=1).output
    assert "big.csv: line 2401: duplicate of line 5 (R3@example.org)" in out
    assert "big.csv: line 1501: duplicate of line 1500 (r1498@example.org)" in out
    assert "added 2498" in out and "rejected 2" in out
    assert len(rows(nl_any.db)) == 2498


def test_strict_imports_nothing_when_a_row_is_bad(nl_any, tmp_path):
    """--strict rolls the whole file back when any row is bad."""
    result = nl_any("subscribers", "import", "--strict", str(write_csv(tmp_path / "bad.csv", BAD_ROWS)), code=1)
    assert "nothing was imported" in result.output and rows(nl_any.db) == {}


def test_dry_run_counts_and_writes_nothing(nl_any):
    """--dry-run reports what would be added and leaves the database empty."""
    out = nl_any("subscribers", "import", "--dry-run", str(SAMPLE)).output
    assert "would add 25" in out and "nothing written" in out and rows(nl_any.db) == {}


def test_bom_and_spreadsheet_quoting_are_read(nl_any, tmp_path):
    """A UTF-8 file with BOM and CRLF line ends, as Excel writes it, imports cleanly."""
    text = '\ufeffemail,name,areas\r\nbom@example.org,"Doe, Jane",Vision;RL\r\n'
    nl_any("subscribers", "import", str(write_csv(tmp_path / "excel.csv", text)))
    assert rows(nl_any.db) == {"bom@example.org": ("Doe, Jane", "Vision;RL", "active")}


@pytest.mark.parametrize(("content", "message"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8 text"),
    ("email,name,areas\nok@example.org,Ok,\nlatin@example.org,Jos\xe9,\n".encode("latin-1"), "not UTF-8 text"),
    (b"<html><body>hello</body></html>\n", "not a subscriber CSV"),
    (b"", "not a subscriber CSV"),
    (b'email,name,areas\nx@example.org,"unterminated,\n', "not valid CSV"),
])
def test_unreadable_file_is_one_line_and_changes_nothing(nl_any, tmp_path, content, message):
    """A file that is not CSV or not UTF-8 gives one line naming the file, and imports nothing."""
    path = tmp_path / "in.csv"
    path.write_bytes(content)
    result = nl_any("subscribers", "import", str(path), code=1)
    assert message in result.output and str(path) in result.output and "Traceback" not in result.output
    assert rows(nl_any.db) == {}


def test_export_to_stdout_is_csv(nl):
    """`export` without a file writes the CSV to stdout, header first."""
    nl("subscribers", "add", "e@example.org", "--name", "E", "--areas", "RL")
    out = list(csv.reader(io.StringIO(nl("subscribers", "export").output)))
    assert out == [["email", "name", "areas"], ["e@example.org", "E", "RL"]]


# --- `subscribers list`: whole addresses, --search, --status, --json, --csv; export's mode -------------------

LONG = "augusta.ada.king.countess.of.lovelace@analytical-engine-note-by-the-translator.bernoulli.example.org"


def _people(nl) -> None:
    nl("subscribers", "add", "ada@example.org", "--name", "Ada Lovelace", "--areas", "LLM,RL")
    nl("subscribers", "add", "GHopper@navy.example.mil", "--name", "Grace Hopper", "--areas", "Agents")
    nl("subscribers", "add", "alan@bletchley.example.org", "--name", "Alan Turing")


def _emails(result) -> list[str]:
    return [json.loads(line)["email"] for line in result.stdout.splitlines()]


def test_list_shows_a_100_character_address_whole(nl, monkeypatch):
    """At Click's runner's 80 columns, a 100-character address folds over lines and is never cut."""
    # the runner is no terminal, so rich takes 80 columns; pinned so a COLUMNS in the environment cannot widen it
    monkeypatch.setattr(cli_base.console, "_width", 80)
    assert len(LONG) == 100
    nl("subscribers", "add", LONG, "--name", "Augusta Ada King, Countess of Lovelace, translator of Menabrea")
    out = nl("subscribers", "list").output
    body = [line.split("│") for line in out.splitlines() if line.startswith("│")]
    assert "".join(cells[1].strip() for cells in body) == LONG
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80


def test_list_search_finds_part_of_a_name_or_an_address_in_any_case(nl):
    """--search matches a piece of the name or of the address, case-insensitively, and % or _ only literally."""
    _people(nl)
    assert _emails(nl("subscribers", "list", "--search", "LOVEL", "--json")) == ["ada@example.org"]
    assert _emails(nl("subscribers", "list", "--search", "navy.EX", "--json")) == ["GHopper@navy.example.mil"]
    assert _emails(nl("subscribers", "list", "--search", "ghopper@", "--json")) == ["GHopper@navy.example.mil"]
    assert _emails(nl("subscribers", "list", "--search", "a%e", "--json")) == []
    assert _emails(nl("subscribers", "list", "--search", "_", "--json")) == []
    assert _emails(nl("subscribers", "list", "--search", "Example.ORG", "--json")) == [
        "ada@example.org", "alan@bletchley.example.org"]
    assert "2 matching" in nl("subscribers", "list", "--search", "Example.ORG").output


def test_list_status_filters(nl):
    """--status shows only that status, alone or with --search; an unknown status is a usage error."""
    _people(nl)
    nl("subscribers", "unsubscribe", "alan@bletchley.example.org")
    assert _emails(nl("subscribers", "list", "--status", "unsubscribed", "--json")) == ["alan@bletchley.example.org"]
    assert _emails(nl("subscribers", "list", "--status", "active", "--json")) == ["ada@example.org",
                                                                                  "GHopper@navy.example.mil"]
    assert _emails(nl("subscribers", "list", "--status", "active", "--search", "alan", "--json")) == []
    assert "1 matching" in nl("subscribers", "list", "--status", "unsubscribed").output
    assert "bounced" in nl("subscribers", "list", "--status", "erased", code=2).output


def test_list_json_is_one_object_a_line(nl):
    """--json prints JSON Lines and nothing else: every field, areas as a list ([] = all), UTC times."""
    _people(nl)
    result = nl("subscribers", "list", "--json")
    found = [json.loads(line) for line in result.stdout.splitlines()]
    assert [f["email"] for f in found] == ["ada@example.org", "GHopper@navy.example.mil", "alan@bletchley.example.org"]
    assert found[0] | {"created_at": None, "confirmed_at": None} == {
        "email": "ada@example.org", "name": "Ada Lovelace", "areas": ["LLM", "RL"], "status": "active",
        "source": "cli", "created_at": None, "confirmed_at": None, "unsubscribed_at": None}
    assert found[2]["areas"] == [] and found[0]["created_at"].endswith("+00:00")
    limited = nl("subscribers", "list", "--json", "--limit", "2")
    assert len(limited.stdout.splitlines()) == 2 and "--limit 0 gives all" in limited.stderr


def test_list_csv_parses_and_imports_back(nl, tmp_path, make_config, runner):
    """--csv is a CSV file with a header that the csv module reads and `import` takes as it is."""
    _people(nl)
    text = nl("subscribers", "list", "--csv").stdout
    found = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0] == "email,name,areas,status,source,created_at,confirmed_at,unsubscribed_at"
    assert [(r["email"], r["name"], r["areas"], r["status"]) for r in found] == [
        ("ada@example.org", "Ada Lovelace", "LLM;RL", "active"),
        ("GHopper@navy.example.mil", "Grace Hopper", "Agents", "active"),
        ("alan@bletchley.example.org", "Alan Turing", "", "active")]
    copy = write_csv(tmp_path / "copy.csv", text)
    other = make_config(f'[database]\nurl = "sqlite:///{tmp_path / "other.db"}"\n', name="other.toml")
    assert runner.invoke(cli, ["--config", str(other), "subscribers", "import", str(copy)]).exit_code == 0
    assert rows(tmp_path / "other.db") == rows(nl.db)
    assert "choose one" in nl("subscribers", "list", "--csv", "--json", code=2).output


def test_list_search_and_stream_on_both_databases(db_url):
    """On SQLite and PostgreSQL alike: --search's query in any case, and the stream's keyset pages
    giving every match once, in order, with a limit across pages."""
    engine = store.engine_for(db_url)
    store.migrate(engine)
    try:
        with engine.begin() as conn:
            for n in range(7):
                audience.add(conn, f"P{n}@example.org", f"Person Nº{n}", "", AREAS)
            audience.add(conn, "other@example.com", "Someone", "", AREAS)
        with engine.connect() as conn:
            every = [s.email for s in audience_search.iter_listing(conn, AREAS, search="PERSON", batch=2)]
            three = [s.email for s in audience_search.iter_listing(conn, AREAS, search="p", limit=3, batch=2)]
            page = audience.listing(conn, AREAS, limit=2, search="p3@EXAMPLE")
    finally:
        engine.dispose()
    assert every == [f"P{n}@example.org" for n in range(7)] and three == every[:3]
    assert [s.email for s in page.subscribers] == ["P3@example.org"] and page.matching == 1


def test_export_file_is_owner_only_from_its_first_byte(nl, tmp_path, monkeypatch):
    """`export FILE` creates its file 0600 under umask 022, before a single address is written."""
    nl("subscribers", "add", "e@example.org")
    seen: list[int] = []
    real = audience.export_csv

    def spy(conn, out, status="active"):
        seen.append(stat.S_IMODE(os.fstat(out.fileno()).st_mode))
        return real(conn, out, status)

    monkeypatch.setattr(audience, "export_csv", spy)
    target = tmp_path / "list.csv"
    (tmp_path / "list.csv.part").write_text("stale")
    (tmp_path / "list.csv.part").chmod(0o644)
    old = os.umask(0o022)
    try:
        nl("subscribers", "export", str(target))
    finally:
        os.umask(old)
    assert seen == [0o600] and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert "e@example.org" in target.read_text(encoding="utf-8") and not (tmp_path / "list.csv.part").exists()


def _imported_state(url: str, people: Path) -> tuple[object, list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Import ``people`` into a database already holding an active, an unsubscribed and an erased address;
    the result's counts, every subscriber in id order, and every event (with its subscriber's address)."""
    engine = store.engine_for(url)
    try:
        store.migrate(engine)
        with engine.begin() as conn:
            for email in ("kept@example.org", "left@example.org", "gone@example.org"):
                audience.add(conn, email, "Before", "", AREAS)
            audience.unsubscribe(conn, "left@example.org")
            audience.delete(conn, "gone@example.org")
        with engine.begin() as conn:
            result = audience.import_csv(conn, people, AREAS)
        s, e = t.subscribers.c, t.subscriber_events.c
        with engine.connect() as conn:
            subs = [(r.email, r.email_key, r.name, r.areas, r.status, r.source, r.created_at == r.updated_at)
                    for r in conn.execute(sa.select(t.subscribers).order_by(s.id))]
            events = [tuple(r) for r in conn.execute(
                sa.select(s.email, e.status, e.cause, e.at == s.created_at).join_from(t.subscriber_events,
                t.subscribers).order_by(s.email, e.id))]
    finally:
        engine.dispose()
    return dict(vars(result)), subs, events


def test_5000_row_import_is_the_same_on_postgresql_as_on_sqlite(pg_url, tmp_path):
    """PostgreSQL's COPY path gives the same subscribers (in the same id order), counts and events as SQLite's."""
    lines = ["email,name,areas"] + [f"Row{i}@example.org,Row {i},{AREAS[i % len(AREAS)] if i % 3 else ''}"
                                    for i in range(5000)]
    lines[10] = "kept@example.org,Changed,RL"           # active: updated
    lines[20] = "left@example.org,Back,"                # unsubscribed: not reactivated
    lines[30] = "GONE@example.org,Again,"               # erased: suppressed
    lines[3000] = "row5@EXAMPLE.org,Twin,"              # a duplicate of line 7, two batches later
    lines[4000] = "not-an-address,Bad,"                 # rejected
    people = write_csv(tmp_path / "people.csv", "\n".join(lines) + "\n")
    sqlite = _imported_state(f"sqlite:///{tmp_path / 'lite.db'}", people)
    postgres = _imported_state(pg_url, people)
    assert postgres == sqlite
    counts = sqlite[0]
    assert (counts["added"], counts["updated"], counts["not_reactivated"], counts["suppressed"]) == (4995, 1, 1, 1)
    assert len(counts["rejected"]) == 2 and len(sqlite[2]) == 2 + 1 + 4995  # kept: added; left: added, unsubscribed
