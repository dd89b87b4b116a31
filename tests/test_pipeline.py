"""The send pipeline's promises (#13): nothing one address does stalls a send, drafts stay drafts,
every message the engine sends leaves one way (and so is DKIM-signed), retries run on the clock."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dkim
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from newsletter import audience, store
from newsletter.config import load_config
from newsletter.content import find_issue, load_issue
from newsletter.lifecycle import RowState
from newsletter.send import Campaign, Mailer, Mode, Outcome, Outgoing, Result
from newsletter.send.policy import RetryPolicy
from newsletter.send.transport import DirectoryTransport
from newsletter.store import tables as t
from newsletter.web import create_app

from .conftest import REPO, ManualClock, invoke, parse
from .smtpd import ScriptedHandler, smtp_server

ISSUE = "2026-05-28"
INTERNATIONAL = {"nutzer@bücher.example": "Nutzer", "jürgen@example.org": "", "bär@bär.example": ""}
PLAIN = ["ada@example.org", "bob@example.org", "cy@example.org"]


@pytest.fixture(params=[True, False], ids=["relay-with-SMTPUTF8", "relay-without"])
def relay(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ScriptedHandler, int, bool]]:
    with smtp_server(tmp_path / "mail", enable_SMTPUTF8=request.param) as (handler, port):
        yield handler, port, request.param


def config_for(make_config, port: int, extra: str = "", retry_seconds: float = 0.05) -> Path:
    return make_config(f"""
        [newsletter]
        secret_key = "pipeline-secret-0123456789abcdef0123456789"
        base_url = "https://news.example.org"
        [smtp]
        port = {port}
        connections = 2
        timeout = 3
        retry_seconds = {retry_seconds}
        max_attempts = 3
        {extra}
        """)


def db_rows(config: Path) -> dict[str, sa.Row]:
    engine = sa.create_engine(load_config(config).database_url)
    with engine.connect() as conn:
        rows = {r.email: r for r in conn.execute(sa.select(t.outbox))}
    engine.dispose()
    return rows


def test_international_addresses_never_stall_a_send(relay, make_config, runner, tmp_path):
    """A list with IDN and non-ASCII local parts sends to completion: each plain address gets one copy; each
    international one is delivered (UTF-8 with SMTPUTF8, the IDNA domain without) or failed with its reason."""
    handler, port, utf8 = relay
    config = config_for(make_config, port)
    people = tmp_path / "people.csv"
    people.write_text("email,name,areas\n" + "".join(f"{a},{n},\n" for a, n in INTERNATIONAL.items())
                      + "".join(f"{a},,\n" for a in PLAIN), encoding="utf-8")
    imported = invoke(runner, config, "subscribers", "import", str(people))
    assert "2 address(es) with a non-ASCII local part (line 3, 4)" in imported.output
    out = invoke(runner, config, "send", ISSUE).output
    assert f"{ISSUE}: sent" in out
    rows = db_rows(config)
    assert all(handler.received[a] == 1 for a in PLAIN)
    if utf8:
        assert {a: handler.received[a] for a in INTERNATIONAL} == dict.fromkeys(INTERNATIONAL, 1)
        assert {r.state for r in rows.values()} == {"sent"}
        data = next(d for r, d in handler.messages if r == "nutzer@bücher.example")
        assert data.startswith(b"To: Nutzer <nutzer@b\xc3\xbccher.example>\r\n")  # RFC 6532: UTF-8 in the header
    else:
        assert handler.received["nutzer@xn--bcher-kva.example"] == 1 and rows["nutzer@bücher.example"].state == "sent"
        data = next(d for r, d in handler.messages if r == "nutzer@xn--bcher-kva.example")
        assert parse(data)["To"].addresses[0].addr_spec == "nutzer@xn--bcher-kva.example" and data.isascii()
        for address in ("jürgen@example.org", "bär@bär.example"):
            assert rows[address].state == "failed" and "SMTPUTF8" in rows[address].last_answer
        failures = invoke(runner, config, "report", ISSUE, "--json").output
        assert failures.count("SMTPUTF8") == 2
    assert sum(handler.received.values()) == len(PLAIN) + (3 if utf8 else 1)


def test_a_row_whose_message_cannot_be_built_fails_with_the_reason_and_the_rest_goes(make_config, runner):
    """A row that breaks while its message is built (a group key this code does not know) is failed
    with the exception named, and every other subscriber still gets exactly one copy."""
    with smtp_server() as (handler, port):
        config = config_for(make_config, port)
        for address in PLAIN:
            invoke(runner, config, "subscribers", "add", address)
        invoke(runner, config, "send", ISSUE, "--enqueue")
        engine = sa.create_engine(load_config(config).database_url)
        with engine.begin() as conn:
            conn.execute(t.outbox.update().where(t.outbox.c.email == "bob@example.org").values(group_key="robotics"))
        engine.dispose()
        out = invoke(runner, config, "send", ISSUE).output
    rows = db_rows(config)
    assert rows["bob@example.org"].state == "failed"
    assert "could not be built: KeyError: 'robotics'" in rows["bob@example.org"].last_answer
    assert handler.received == {"ada@example.org": 1, "cy@example.org": 1} and f"{ISSUE}: sent" in out


class ExplodingTransport(DirectoryTransport):
    """A real transport (it writes .eml files) with a bug for one address: it raises instead of answering."""

    def deliver(self, msg: Outgoing) -> Result:
        if msg.rcpt == "bob@example.org":
            raise RuntimeError("transport bug")
        return super().deliver(msg)


def test_a_transport_exception_is_retried_then_failed_and_no_thread_dies(make_config, tmp_path):
    """An exception out of the transport defers that row (retried on the clock, no wall time spent) and fails
    it after max_attempts with the reason; the other rows are delivered and the issue ends sent."""
    config = load_config(config_for(make_config, 9, retry_seconds=600))
    engine = store.connect(store.engine_for(config.database_url))
    with engine.begin() as conn:
        for address in PLAIN:
            audience.add(conn, address, "", "", config.newsletter.areas)
    clock = ManualClock()
    mailer = Mailer(config, clock, transport=lambda: ExplodingTransport(tmp_path / "out"))
    issue = load_issue(find_issue(config.path("issues"), ISSUE), config.newsletter.areas)
    run = Campaign(config, engine, issue, clock=clock, mailer=mailer).run(Mode.SEND)
    engine.dispose()
    assert run.report is not None and run.report.state == "sent" and run.fault is None
    assert run.report.counts["sent"] == 2 and run.report.counts["failed"] == 1
    (failure,) = run.report.failures
    assert failure.email == "bob@example.org" and "RuntimeError: transport bug" in failure.answer
    assert clock.slept == [600.0, 1200.0]  # the backoff, waited on the clock: retry_seconds · 2^(n − 1)
    assert len(list((tmp_path / "out").glob("*.eml"))) == 2


def test_retry_policy_is_a_pure_function_of_outcome_and_attempts():
    """Sent is final, a deferral backs off exponentially until max_attempts, a bounce fails and flags the address."""
    policy = RetryPolicy(max_attempts=3, retry_seconds=60)
    assert policy.after(Outcome.SENT, 1).state is RowState.SENT
    assert [policy.after(Outcome.DEFERRED, n).retry_in.total_seconds() for n in (1, 2)] == [60, 120]  # type: ignore[union-attr]
    assert policy.after(Outcome.DEFERRED, 3).state is RowState.FAILED
    assert policy.after(Outcome.FAILED, 1).state is RowState.FAILED and not policy.after(Outcome.FAILED, 1).bounced
    assert policy.after(Outcome.BOUNCED, 1).bounced


def draft_issues(tmp_path: Path, ready: str = "false") -> Path:
    folder = tmp_path / "issues"
    folder.mkdir()
    text = (REPO / "issues" / f"{ISSUE}.toml").read_text(encoding="utf-8")
    (folder / f"{ISSUE}.toml").write_text(text.replace("ready = true", f"ready = {ready}", 1), encoding="utf-8")
    return folder


def paths_to(issues: Path) -> str:
    return f'[paths]\nissues = "{issues}"\ntemplates = "{REPO / "templates" / "email"}"'


def test_a_draft_is_never_mailed_to_the_list_but_can_be_tested_then_approved(make_config, runner, tmp_path):
    """`send` of a draft exits non-zero with one line and sends nothing; `--test-to` sends one copy;
    after `issue approve`, `send` delivers it to everyone."""
    folder = draft_issues(tmp_path)
    with smtp_server() as (handler, port):
        config = config_for(make_config, port, paths_to(folder))
        for address in PLAIN:
            invoke(runner, config, "subscribers", "add", address)
        refused = invoke(runner, config, "send", ISSUE, code=1).output
        assert len(refused.strip().splitlines()) == 1
        assert f"{folder / ISSUE}.toml" in refused and f"newsletter issue approve {ISSUE}" in refused
        assert not handler.messages and not db_rows(config)
        invoke(runner, config, "send", ISSUE, "--test-to", "editor@example.org")
        assert list(handler.received) == ["editor@example.org"] and not db_rows(config)
        invoke(runner, config, "issue", "approve", ISSUE)
        invoke(runner, config, "send", ISSUE)
    assert all(handler.received[a] == 1 for a in PLAIN)


def test_ready_must_be_a_toml_boolean(make_config, runner, tmp_path):
    """`ready = "yes"` is a mistake named in one line, not a ready issue."""
    folder = draft_issues(tmp_path, ready='"yes"')
    config = make_config(paths_to(folder))
    out = invoke(runner, config, "issue", "check", code=1).output
    assert "ready: Input should be a valid boolean" in out and len(out.strip().splitlines()) == 1


def test_every_message_the_engine_sends_verifies_with_dkim(make_config, runner, dkim_key):
    """With a DKIM key configured, an issue copy, a test copy and the web's confirmation mail all verify
    with dkimpy (a tampered Subject does not)."""
    pem, dns = dkim_key
    with smtp_server() as (handler, port):
        path = config_for(make_config, port, f'dkim_key_file = "{pem}"\ndkim_selector = "nl2026"')
        invoke(runner, path, "subscribers", "add", "ada@example.org")
        invoke(runner, path, "send", ISSUE)
        invoke(runner, path, "send", ISSUE, "--test-to", "editor@example.org")
        config = load_config(path)
        engine = store.engine_for(config.database_url)
        from .test_web import subscribe

        with TestClient(create_app(config, engine), base_url="http://localhost", client=("127.0.0.1", 5000)) as client:
            assert subscribe(client, "new@example.org", "Nia").status_code == 200
        engine.dispose()
    got = {rcpt: data for rcpt, data in handler.messages}
    assert set(got) == {"ada@example.org", "editor@example.org", "new@example.org"}
    assert "Confirm your subscription" in parse(got["new@example.org"])["Subject"]
    for data in got.values():
        assert data.startswith(b"DKIM-Signature:") and dkim.verify(data, dnsfunc=dns)
        assert not dkim.verify(data.replace(b"Subject:", b"Subject: x", 1), dnsfunc=dns)


def test_directory_transport_writes_what_would_go_out(make_config, runner, tmp_path):
    """`[transport] kind = "directory"` sends nothing over SMTP and leaves one owner-only .eml per subscriber."""
    out = tmp_path / "outgoing"
    config = make_config(f'[transport]\nkind = "directory"\ndirectory = "{out}"')
    for address in PLAIN:
        invoke(runner, config, "subscribers", "add", address)
    invoke(runner, config, "send", ISSUE)
    files = sorted(out.glob("*.eml"))
    assert [parse(f.read_bytes())["To"].addresses[0].addr_spec for f in files] == sorted(PLAIN)
    assert out.stat().st_mode & 0o777 == 0o700 and {f.stat().st_mode & 0o777 for f in files} == {0o600}
    shutil.rmtree(out)


def test_an_issue_copy_has_no_line_starting_with_a_dot_so_smtp_need_not_stuff_it(repo_config):
    """Compose writes a leading '.' as QP =2E (a name '.Dot' in a slot, any line of the parts), so the copy it
    marks dot_safe really is, and reads back with the dot."""
    from newsletter.links import Links
    from newsletter.send import Recipient
    from newsletter.send.groups import Groups

    mailer = Mailer(repo_config)
    issue = load_issue(find_issue(repo_config.path("issues"), ISSUE), repo_config.newsletter.areas)
    groups = Groups(repo_config, issue, mailer.sender)
    prepared = groups.get("all")
    assert prepared is not None
    msg = mailer.copy(prepared, Links("k", "https://news.example.org"), Recipient(1, "d@example.org", ".Dot"), "<m@x>")
    assert msg.dot_safe and b"\n." not in msg.data and not msg.data.startswith(b".")
    assert "Hi .Dot" in parse(msg.data).get_body(("plain",)).get_content()
