"""The benchmark script still runs end to end (on 200 subscribers, into the project's own SMTP sink)."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import REPO


def test_bench_runs_on_200_subscribers_and_writes_table_json_and_chart(tmp_path):
    """bench/run.py on a small list prints its table, and writes results.json with positive rates and a PNG."""
    done = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--sizes", "200", "--naive", "5",
                           "--sink", "aiosmtpd", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    (engine,) = results["engine"]
    assert engine["subscribers"] == 200 and engine["rate"] > 0 and engine["send"]["peak_rss_mb"] > 0
    assert results["naive"]["rate"] > 0 and results["render_all"]["groups"] == 15
    assert (tmp_path / "chart.png").read_bytes().startswith(b"\x89PNG")
    assert "engine, 200 subscribers" in done.stdout and any("naive" in line for line in results["targets"])


def test_bench_ingest_runs_and_applies_every_notice(tmp_path):
    """bench/ingest.py on 150 notices prints its figures and applies every one (the rate is judged at full size)."""
    done = subprocess.run([sys.executable, str(REPO / "bench" / "ingest.py"), "--notices", "150"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    figures = dict(line.split(None, 1) for line in done.stdout.splitlines() if line and line[0].islower())
    assert figures["applied"].strip() == "150" and float(figures["notices/s"].replace(",", "")) > 0, done.stderr


def test_bench_postgres_runs_workers_sqlite_and_claims(pg_url, tmp_path):
    """bench/postgres.py on 300 subscribers and small claims prints its table; rates, reads and claim times > 0."""
    from .conftest import PG_URL  # pg_url (unused schema) is what skips here, or fails in CI, without PostgreSQL

    done = subprocess.run([sys.executable, str(REPO / "bench" / "postgres.py"), "--subscribers", "300",
                           "--claims-small", "200", "--claims-large", "2000", "--claim-calls", "5",
                           "--sink", "aiosmtpd", "--pg-url", PG_URL, "--json", str(tmp_path / "pg.json")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((tmp_path / "pg.json").read_text(encoding="utf-8"))
    pg, lite = results["postgres"], results["sqlite"]
    assert pg["messages"] == lite["messages"] > 0 and pg["rate"] > 0 and lite["rate"] > 0 and results["ratio"] > 0
    assert pg["rows_read_per_message"] > 0 and pg["schema_rows_read_per_message"] > 0
    assert [c["due"] for c in results["claims"]] == [200, 2000] and all(c["median_ms"] > 0 for c in results["claims"])
    assert "PostgreSQL workers vs SQLite" in done.stdout and "PG 2 workers / SQLite" in done.stdout
    assert any(line.startswith("claim at 2,000 due rows") for line in done.stdout.splitlines()), done.stdout


def test_bench_dkim_runs_signed_and_unsigned_on_a_tiny_list(tmp_path):
    """bench/run.py --dkim on 40 subscribers prints its table and writes dkim.json: both engine runs sent, the
    signer's and raw RSA's CPU per message and dkimpy's measured, the CPU target judged."""
    done = subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--dkim", "--sizes", "40",
                           "--sink", "aiosmtpd", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    results = json.loads((tmp_path / "dkim.json").read_text(encoding="utf-8"))
    unsigned, signed = results["engine"]
    assert (unsigned["label"], signed["label"]) == ("unsigned", "signed") and signed["subscribers"] == 40
    assert unsigned["rate"] > 0 and signed["rate"] > 0 and signed["send"]["peak_rss_mb"] > 0
    cpu = results["signing"]
    assert cpu["messages"] == 40 and cpu["signer_ms"] > 0 and cpu["raw_rsa_ms"] > 0 and cpu["dkimpy_ms"] > 0
    assert "engine, signed" in done.stdout and any("signing CPU" in line for line in results["targets"])


def test_bench_console_runs_and_times_the_dashboard(tmp_path):
    """bench/console.py on 2,000 subscribers fills its database, times GET /admin/ and says met or MISSED."""
    out = tmp_path / "console.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "console.py"), "--subscribers", "2000",
                           "--requests", "5", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["dashboard"]["p95_ms"] > 0 and results["api_issues"]["p50_ms"] > 0
    assert "GET /admin/ p95" in results["targets"][0]
