"""The rendered emails in headless Chromium: no horizontal scroll on a phone or a desktop."""

from __future__ import annotations

import pytest

from newsletter.cli import cli

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("issue", ["2026-05-17", "2026-05-28"])
def test_no_horizontal_overflow_at_375_and_700(browser, make_config, runner, tmp_path, issue):
    """Every group's HTML fits a 375 px phone and a 700 px window with no horizontal scroll."""
    out = tmp_path / issue
    result = runner.invoke(cli, ["--config", str(make_config()), "preview", issue, "--out", str(out)])
    assert result.exit_code == 0, result.output
    pages = sorted(p for p in out.glob("*.html") if p.name != "index.html")
    assert len(pages) == 15
    for width in (375, 700):
        page = browser.new_page(viewport={"width": width, "height": 800})
        for path in pages:
            page.goto(path.as_uri())
            scroll, client = page.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert scroll <= client, f"{path.name} at {width}px: content {scroll}px wide"
            if width == 375:
                # one column: every paper card's column spans the phone's width
                widths = page.evaluate(
                    "Array.from(document.querySelectorAll('.nl-card')).map(e => e.getBoundingClientRect().width)")
                assert widths and min(widths) >= 360, (path.name, widths)
        page.close()
