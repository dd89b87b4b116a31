"""The console's subscribers pages in headless Chromium, at 375 px and by keyboard alone: uvicorn in a thread, a real
SQLite file, an operator signing in through the form."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from newsletter import accounts, audience, store
from newsletter.audience import search
from newsletter.config import load_config
from newsletter.mailsink import free_port
from newsletter.web import create_app

from .conftest import AREAS, live_server

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"
NARROW = {"width": 375, "height": 800}
BAD_CSV = ("email,name,areas\ngood1@example.org,Good One,LLM\nbroken-address,Nobody,\n"
           "good2@example.org,Good Two,Quantum\ngood3@example.org,Good Three,\n")


@dataclass
class Live:
    base: str
    engine: Engine

    def subscriber(self, email: str) -> audience.Subscriber | None:
        with self.engine.connect() as conn:
            return audience.get(conn, email)


@pytest.fixture
def live(make_config) -> Iterator[Live]:
    port = free_port()
    config = load_config(make_config(f"""
        [newsletter]
        secret_key = "browser-console-secret-0123456789abcdef"
        base_url = "http://127.0.0.1:{port}"
        """))
    engine = store.engine_for(config.database_url)
    store.migrate(engine)
    with engine.begin() as conn:
        accounts.add_user(conn, "ada", "operator", PASSWORD, audience.subscribers.utcnow())
        audience.add(conn, "ada.lovelace@example.org", "Ada Lovelace", "", AREAS)
        for n in range(60):
            audience.add(conn, f"reader{n}@example.org", f"Reader {n}", "RL", AREAS)
    try:
        with live_server(create_app(config, engine), port) as url:
            yield Live(url, engine)
    finally:
        engine.dispose()


def fits(page: Any) -> None:
    """Nothing wider than the 375 px screen, and every form control with a label a screen reader reads."""
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, page.url
    unlabelled = page.evaluate("""[...document.querySelectorAll('input, select, textarea')]
        .filter(e => e.type !== 'hidden' && !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
        .map(e => e.name)""")
    assert unlabelled == [], (page.url, unlabelled)


def tab_to(page: Any, selector: str, limit: int = 60) -> None:
    """Press Tab until the element matching ``selector`` has the focus (the keyboard's way there)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector} on {page.url}")


def test_an_operator_finds_a_subscriber_and_edits_its_areas_by_keyboard_at_375_px(browser, live):
    """Sign in, Tab to the search box, search, Tab to the result, open it, Tab into the areas form, tick Vision with
    the space bar and save: the subscriber gets Vision only; every page fits 375 px with every control labelled."""
    page = browser.new_page(viewport=NARROW)
    try:
        page.goto(f"{live.base}/admin/subscribers")  # the sign-in form, which comes back here
        fits(page)
        page.fill("#name", "ada")
        page.fill("#password", PASSWORD)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        fits(page)
        tab_to(page, "#q")
        page.keyboard.type("LOVELACE")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        fits(page)
        tab_to(page, "tbody a")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.locator("h1").inner_text() == "ada.lovelace@example.org"
        fits(page)
        tab_to(page, "input[name=areas][value=Vision]")
        page.keyboard.press("Space")
        tab_to(page, "form[action$='/areas'] button")
        with page.expect_navigation():
            page.keyboard.press("Enter")
        found = live.subscriber("ada.lovelace@example.org")
        assert found is not None and found.areas == ("Vision",)
        assert "Vision" in page.locator("dl.facts").inner_text()
        page.goto(f"{live.base}/admin/subscribers?q=reader")
        with page.expect_navigation():
            page.click("text=Next page")
        fits(page)
        assert page.locator("tbody tr").count() == 10
    finally:
        page.close()


def test_an_import_shows_its_line_errors_before_anything_is_written_then_imports_the_good_rows(browser, live, tmp_path):
    """Upload a CSV with two bad lines: the preview names lines 3 and 4 with their reasons while the list is
    unchanged; "Import" then adds the two good rows only."""
    csv_file = tmp_path / "people.csv"
    csv_file.write_text(BAD_CSV, encoding="utf-8")
    page = browser.new_page(viewport=NARROW)
    try:
        page.goto(f"{live.base}/admin/subscribers/import")
        page.fill("#name", "ada")
        page.fill("#password", PASSWORD)
        with page.expect_navigation():
            page.click("button[type=submit] >> text=Sign in")
        fits(page)
        page.set_input_files("#file", str(csv_file))
        page.click("text=Check the file")
        errors = page.locator("#line-errors tbody tr")
        errors.first.wait_for()
        fits(page)
        assert [errors.nth(i).locator("td").first.inner_text() for i in range(errors.count())] == ["3", "4"]
        assert "Quantum" in errors.nth(1).inner_text()
        assert live.subscriber("good1@example.org") is None  # nothing written before the confirmation
        page.click("text=Import the 2 good rows")
        page.wait_for_selector("#import-summary >> text=added 2")
        fits(page)
        assert live.subscriber("good1@example.org") and live.subscriber("good3@example.org")
        with live.engine.connect() as conn:
            assert search.status_counts(conn)["active"] == 63
    finally:
        page.close()
