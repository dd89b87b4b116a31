"""uvicorn's access log, from a real server on a loopback port: requests are logged, link tokens are not."""

from __future__ import annotations

import io
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from newsletter import audience, store
from newsletter.config import load_config
from newsletter.links import PREFERENCES, UNSUBSCRIBE, redact
from newsletter.mailsink import free_port
from newsletter.web import create_app
from newsletter.web.guard import ACCESS_LOG
from newsletter.web.serving import server

from .conftest import AREAS


@pytest.fixture
def live_app(make_config) -> Iterator[tuple[str, object, io.StringIO]]:
    """The app under uvicorn as `newsletter serve` runs it (web.serving.server) on a free port; yields
    (base URL, the app's state, the access log as uvicorn's own formatter writes it)."""
    config = load_config(make_config('[newsletter]\nsecret_key = "access-log-secret-0123456789abcdef"\n'
                                     '[web]\npreview_token = "preview-s3cret-token"\n'))
    engine = store.engine_for(config.database_url)
    store.migrate(engine)
    app = create_app(config, engine)
    port = free_port()
    uvi = server(app, "127.0.0.1", port, lifespan="off")
    access = logging.getLogger(ACCESS_LOG)
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(access.handlers[0].formatter)  # uvicorn's AccessFormatter, set up by server()
    access.addHandler(handler)
    thread = threading.Thread(target=uvi.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uvi.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert uvi.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}", app.state.web, captured
    finally:
        access.removeHandler(handler)
        uvi.should_exit = True
        thread.join(10)
        engine.dispose()


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_access_log_shows_requests_without_their_tokens(live_app):
    """Unsubscribe, preferences, confirm and preview requests reach the access log with "…" for their tokens."""
    base, web, captured = live_app
    with web.engine.begin() as conn:
        sid = audience.add(conn, "ada@example.org", "Ada", "", AREAS, source="cli", status="active").id
    tokens = [web.links.token(UNSUBSCRIBE, sid), web.links.token(PREFERENCES, sid),
              web.links.confirm_url(sid).rsplit("/", 1)[1], "preview-s3cret-token"]
    paths = [f"/unsubscribe/{tokens[0]}", f"/preferences/{tokens[1]}?x=1", f"/confirm/{tokens[2]}",
             f"/preview/2026-05-28?areas=RL&token={tokens[3]}"]
    assert [get(base + p) for p in paths] == [200, 200, 200, 200]
    deadline = time.monotonic() + 5
    while captured.getvalue().count('" 200') < len(paths) and time.monotonic() < deadline:
        time.sleep(0.05)
    log = captured.getvalue()
    for line in ("GET /unsubscribe/… HTTP/1.1", "GET /preferences/…?x=1 HTTP/1.1", "GET /confirm/… HTTP/1.1",
                 "GET /preview/2026-05-28?areas=RL&token=… HTTP/1.1"):
        assert line in log, log
    assert not [t for t in tokens if t in log], log


def test_redact_leaves_other_paths_alone():
    """Only the token of a link-bearing path or a token= query value is replaced; other URLs stay as they were."""
    assert redact("/resubscribe/MQ.abc-_x/") == "/resubscribe/…/"
    assert redact("/archive/2026-05-28?areas=RL") == "/archive/2026-05-28?areas=RL"
    assert redact("/preview/x?tokens=1&token=s") == "/preview/x?tokens=1&token=…"
