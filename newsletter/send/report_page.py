"""``newsletter report ISSUE --html FILE``: the report as one self-contained page.

No script, no external resource: the style is inline and the two charts (sends per minute, the
outcome per domain as stacked bars) are SVG drawn by ``templates/report.html.j2`` from the shapes
computed here; the papers' click counts (clickreport.py) are tables. Jinja's autoescape escapes every
string that came from outside (addresses, domains, server answers, titles), in text and in attributes alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2
from markupsafe import Markup

from .clickreport import ClickReport
from .insights import DomainOutcome, Insights
from .report import Report

WIDTH = 760            # both charts' viewBox width
PLOT = (56, 12, 8, 34)  # per-minute chart margins: left, top, right, bottom
PLOT_HEIGHT = 180
LABEL_WIDTH = 210      # per-domain chart: the domain names' column, then the bar, then the numbers
BAR_WIDTH = 380
ROW = 26

# The stacked bar's parts: together they are every message to the domain, each counted once.
SEGMENTS = (
    ("sent", "sent at the first try", "#2da44e"),
    ("sent_after_deferral", "sent after a deferral", "#8fd19e"),
    ("failed_bounced", "failed: 5xx or hard bounce", "#cf222e"),
    ("failed_other", "failed: gave up retrying", "#f0883e"),
    ("open", "not done: queued, deferred or unknown", "#8c959f"),
)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # the tooltip (an SVG <title>)
    color: str = "#0969da"


def minute_bars(per_minute: list[tuple[datetime, int]]) -> tuple[list[Bar], dict[str, str]]:
    """One bar per minute with sends, placed by its time, so a minute without sends is a gap."""
    if not per_minute:
        return [], {}
    left, top, right, bottom = PLOT
    first, last = per_minute[0][0], per_minute[-1][0]
    span = int((last - first).total_seconds() // 60) + 1
    peak = max(n for _, n in per_minute)
    step = (WIDTH - left - right) / span
    gap = step * 0.15 if step > 4 else 0.0
    bars = []
    for minute, n in per_minute:
        height = n / peak * PLOT_HEIGHT
        x = left + (minute - first).total_seconds() // 60 * step
        bars.append(Bar(x, top + PLOT_HEIGHT - height, max(step - gap, 1.0), height,
                        f"{minute:%Y-%m-%d %H:%M} UTC: {n} sent"))
    same_day = first.date() == last.date()
    axis = {"first": f"{first:%Y-%m-%d %H:%M} UTC", "last": f"{last:%H:%M}" if same_day else f"{last:%Y-%m-%d %H:%M}",
            "peak": str(peak)}
    return bars, axis


def domain_rows(domains: list[DomainOutcome]) -> list[dict[str, object]]:
    """Each domain's stacked bar, scaled to the domain with the most messages."""
    most = max((d.messages for d in domains), default=0) or 1
    rows = []
    for i, d in enumerate(domains):
        parts = {"sent": d.sent - d.sent_after_deferral, "sent_after_deferral": d.sent_after_deferral,
                 "failed_bounced": d.failed_bounced, "failed_other": d.failed - d.failed_bounced, "open": d.open}
        x, y, bars = float(LABEL_WIDTH), i * ROW + 4.0, []
        for key, words, color in SEGMENTS:
            width = parts[key] / most * BAR_WIDTH
            if parts[key]:
                bars.append(Bar(x, y, width, ROW - 8, f"{d.domain}: {parts[key]} {words}", color))
            x += width
        name = d.domain if len(d.domain) <= 30 else d.domain[:29] + "…"
        rows.append({"domain": d, "name": name, "y": y + ROW - 12, "bars": bars, "end": x + 6})
    return rows


def render_page(found: Report, insight: Insights, generated: datetime, clicks: ClickReport | None = None) -> str:
    return _env().get_template("report.html.j2").render(**_context(found, insight, generated), clicks=clicks)


def render_body(found: Report, insight: Insights, generated: datetime, clicks: ClickReport | None = None) -> Markup:
    """The page's content without its document: the console shows it in its own layout (escaped here, as above)."""
    return Markup(_env().get_template("report_body.html.j2").render(**_context(found, insight, generated),
                                                                     clicks=clicks))


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("newsletter", "templates"), autoescape=True)


def _context(found: Report, insight: Insights, generated: datetime) -> dict[str, Any]:
    bars, axis = minute_bars(insight.per_minute)
    shown = insight.domains + ([insight.other] if insight.other else [])
    sent_per_minute = [n for _, n in insight.per_minute]
    return dict(
        report=found, insight=insight, generated=f"{generated:%Y-%m-%d %H:%M} UTC",
        width=WIDTH, plot=PLOT, plot_height=PLOT_HEIGHT, minute_bars=bars, axis=axis,
        minutes=len(sent_per_minute), peak=max(sent_per_minute, default=0),
        mean=round(sum(sent_per_minute) / len(sent_per_minute), 1) if sent_per_minute else 0,
        domains=shown, domain_rows=domain_rows(shown), label_width=LABEL_WIDTH, row=ROW, segments=SEGMENTS,
        rates=found.rates(),
    )
