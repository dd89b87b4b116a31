"""Jinja2 → MJML → mjml-python → premailer, once per group; slots filled once per subscriber.

A *group* is a set of chosen areas. Everything that depends only on the issue and the group (the
MJML compile, CSS inlining, the plain-text part, subject and preheader) is rendered once per group;
what differs per subscriber (name, signed links) is left as slot markers and filled by ``fill``,
which is a single regex pass over the prepared strings.
"""

from __future__ import annotations

import html as htmllib
import logging
import re
import secrets
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2
import mjml
import premailer
from markdown_it import MarkdownIt
from markupsafe import Markup

from . import areas as area_names
from . import clicks
from .clicks import ClickLinks
from .config import Config
from .content import Issue, Paper
from .errors import RenderError

GMAIL_CLIP_BYTES = 102 * 1024
SLOT_NAMES = ("name", "email", "unsubscribe_url", "preferences_url")
TEXT_WIDTH = 72  # paragraphs of the plain-text part
TEXT_MAX = 78    # no line of the plain-text part is longer, except a line that is one URL

# MJML 4's components and head elements; mjml-python passes anything else through silently.
MJML_TAGS = frozenset(
    """mjml mj-head mj-body mj-attributes mj-all mj-class mj-breakpoint mj-font mj-html-attributes
    mj-html-attribute mj-selector mj-preview mj-style mj-title mj-accordion mj-accordion-element
    mj-accordion-title mj-accordion-text mj-button mj-carousel mj-carousel-image mj-column mj-divider
    mj-group mj-hero mj-image mj-navbar mj-navbar-link mj-raw mj-section mj-social mj-social-element
    mj-spacer mj-table mj-text mj-wrapper mj-include""".split()
)
_MJ_TAG = re.compile(r"<(mj-[A-Za-z0-9-]+)")

# Area tag colours (background, text), assigned in the configured order of areas.
PALETTE = (("#ede9fe", "#5b21b6"), ("#ccfbf1", "#115e59"), ("#ffedd5", "#9a3412"), ("#dbeafe", "#1e40af"),
           ("#fce7f3", "#9d174d"), ("#ecfccb", "#3f6212"))


@dataclass(frozen=True)
class RenderedGroup:
    """One group's email with its slots still open."""

    key: str
    areas: tuple[str, ...]
    subject: str
    preheader: str
    html: str
    text: str
    featured: tuple[str, ...]
    others: tuple[str, ...]
    slot_pattern: re.Pattern[str]
    mjml: str = ""  # the MJML source the HTML was compiled from, slots open too

    def fill(self, slots: Mapping[str, str]) -> tuple[str, str]:
        """(html, text) for one subscriber; slot values are HTML-escaped in the HTML part."""
        return self._markup(self.html, slots), self.slot_pattern.sub(lambda m: slots[m.group(1)], self.text)

    def fill_mjml(self, slots: Mapping[str, str]) -> str:
        """The MJML source with the same slot values as ``fill``'s HTML (escaped: MJML is markup)."""
        return self._markup(self.mjml, slots)

    def _markup(self, source: str, slots: Mapping[str, str]) -> str:
        return self.slot_pattern.sub(lambda m: htmllib.escape(slots[m.group(1)]), source)


def split_papers(issue: Issue, areas: Sequence[str]) -> tuple[list[Paper], list[Paper]]:
    """(papers shown in full, papers only listed): a paper is featured if its areas meet the group's."""
    wanted = set(areas)
    featured = [p for p in issue.papers if wanted & set(p.areas)]
    return featured, [p for p in issue.papers if not wanted & set(p.areas)]


class Renderer:
    """Renders issues for one configuration; holds the compiled templates."""

    def __init__(self, config: Config, templates: Path | None = None) -> None:
        self.config = config
        self.areas = tuple(config.newsletter.areas)
        self.templates = templates or config.path("templates")
        self._nonce = secrets.token_hex(4)
        self.slot_pattern = re.compile(rf"__nl{self._nonce}_([a-z_]+)__")
        self._md = MarkdownIt("commonmark", {"html": False, "linkify": False})
        self._env = self._environment()

    def _environment(self) -> jinja2.Environment:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.templates),
            autoescape=lambda name: not (name or "").endswith(".txt.j2"),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )
        env.filters["md"] = lambda body: Markup(self._md.render(body))
        env.filters["plain"] = plain_text
        env.globals["slot"] = self._slot
        env.globals["area_colors"] = {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(self.areas)}
        return env

    def _slot(self, name: str) -> Markup:
        if name not in SLOT_NAMES:
            raise RenderError(f"{self.templates}: unknown slot {name!r} (known: {', '.join(SLOT_NAMES)})")
        return Markup(f"__nl{self._nonce}_{name}__")

    def render(self, issue: Issue, chosen: Iterable[str], web: Mapping[str, str] | None = None,
               track: ClickLinks | None = None, welcome: bool = False) -> RenderedGroup | None:
        """The group's email, or None when no paper meets its areas and config says not to send.

        ``web`` (the archive page: ``action``, ``csrf_field``, ``csrf``) renders the issue itself rather than
        someone's copy: no greeting, and a subscribe box where the footer's own links would be. ``track``: the
        papers' links go through its signed ``/r/`` links (clicks.py), the same in every copy of this render.
        ``welcome``: the copy a reader who has just confirmed gets (send/latejoin.py): welcomed, then the issue."""
        areas = area_names.group(chosen, self.areas)
        featured, others = split_papers(issue, areas)
        if not featured and not self.config.newsletter.send_when_no_match:
            return None
        ctx = self._context(issue, areas, featured, others) | {"web": web, "welcome": welcome}
        ctx["link"] = self._linker(ctx["archive_url"], track)
        ctx["subject"] = _one_line(self._template("subject.txt.j2", ctx))
        ctx["preheader"] = _one_line(self._template("preheader.txt.j2", ctx))
        source = self._template("base.mjml.j2", ctx)
        html = self._compile(source)
        return RenderedGroup(
            key=area_names.group_key(areas, self.areas), areas=areas, subject=ctx["subject"],
            preheader=ctx["preheader"],
            html=html, text=fit_text(self._template("text.txt.j2", ctx).strip(), self.slot_pattern) + "\n",
            featured=tuple(p.title for p in featured), others=tuple(p.title for p in others),
            slot_pattern=self.slot_pattern, mjml=source,
        )

    def render_all(self, issue: Issue) -> dict[tuple[str, ...], RenderedGroup | None]:
        return {areas: self.render(issue, areas) for areas in area_names.all_groups(self.areas)}

    def _context(self, issue: Issue, areas: tuple[str, ...], featured: list[Paper], others: list[Paper]) -> dict:
        return {
            "newsletter": self.config.newsletter,
            "issue": issue,
            "chosen": areas,
            "all_areas": set(areas) == set(self.areas),
            "featured": featured,
            "others": others,
            "archive_url": f"{self.config.newsletter.base_url}/archive/{issue.slug}",
        }

    def _linker(self, archive_url: str, track: ClickLinks | None) -> Callable[[Paper, str], str | None]:
        """The templates' ``link(paper, kind)``: the paper's link of that kind (None: it has none), tracked or not."""
        def link(paper: Paper, kind: str) -> str | None:
            if kind not in clicks.KINDS:
                raise RenderError(f"{self.templates}: link(paper, {kind!r}): the kinds are {', '.join(clicks.KINDS)}")
            url = clicks.target(paper, kind, archive_url)
            return track.url(paper, kind) if track is not None and url else url
        return link

    def _template(self, name: str, ctx: Mapping[str, object]) -> str:
        try:
            return self._env.get_template(name).render(ctx)
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(f"{self.templates / (exc.name or name)}:{exc.lineno}: {exc.message}") from None
        except jinja2.TemplateNotFound as exc:
            raise RenderError(f"{self.templates}: template {exc.name} not found") from None
        except jinja2.UndefinedError as exc:
            raise RenderError(f"{self.templates / name}: {exc.message}") from None

    def _compile(self, source: str) -> str:
        self._check_tags(source)
        try:
            html = mjml.mjml2html(source, disable_comments=True, fonts={})
        except Exception as exc:  # mjml-python raises plain exceptions for malformed MJML
            raise RenderError(f"{self.templates}: MJML did not compile: {exc}") from None
        return inline_css(html)

    def _check_tags(self, source: str) -> None:
        for tag in sorted(set(_MJ_TAG.findall(source)) - MJML_TAGS):
            raise RenderError(f"{self._where(tag)}: <{tag}> is not an MJML tag")

    def _where(self, tag: str) -> str:
        """file:line of the template that holds the tag, for the error message."""
        for path in sorted(self.templates.rglob("*.j2")):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if re.search(rf"<{re.escape(tag)}(?![A-Za-z0-9-])", line):
                    return f"{path}:{n}"
        return str(self.templates)


def inline_css(html: str) -> str:
    """premailer with no network and quiet cssutils; the <style> blocks stay as they are.

    premailer drops every rule it inlines or that matches nothing here, and those include the
    ones meant for mail clients: Outlook.com's dark mode (``[data-ogsc] …``), ``#outlook a``.
    Keeping the style tags gives what the MJML compiler gives (its head styles) plus inline styles.
    """
    out = premailer.Premailer(
        html,
        strip_important=False,
        allow_network=False,
        cssutils_logging_level=logging.CRITICAL,
        disable_validation=True,
        remove_classes=False,
        keep_style_tags=True,  # rules that match nothing here ([data-ogsc], #outlook a) are for mail clients
    ).transform()
    return out if out.lstrip().lower().startswith("<!doctype") else "<!doctype html>\n" + out


_MD_LINK = re.compile(r"\[([^\]]+)\]\((\S+?)\)")
_BULLET = re.compile(r"^(\s*[-*•]\s+)")


def plain_text(body: str) -> str:
    """Markdown source → readable plain text: links as 'text (url)', paragraphs wrapped at 72."""
    body = _MD_LINK.sub(lambda m: f"{m.group(1)} ({m.group(2)})", body)
    return "\n".join(_wrap_line(line) for line in body.strip().splitlines())


def _wrap_line(line: str) -> str:
    bullet = _BULLET.match(line)
    indent = " " * len(bullet.group(1)) if bullet else ""
    return textwrap.fill(line, TEXT_WIDTH, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False) if line.strip() else ""


_URL_LINE = re.compile(r"[(<]?(https?://|mailto:)\S+$")


def fit_text(text: str, slot: re.Pattern[str]) -> str:
    """Every line within 78 characters, except a line that is one URL (a URL cannot be wrapped).

    A slot's value is only known per subscriber, so a line ends right after a slot's word
    ("Hi <name>,") and the rest is wrapped on the lines below.
    """
    return "\n".join(part for line in text.split("\n") for part in _fit(line, slot))


def _fit(line: str, slot: re.Pattern[str]) -> list[str]:
    found = slot.search(line)
    if found and (end := line.find(" ", found.end())) != -1:
        return [line[:end], *_fit(line[end + 1:], slot)]
    if len(line) <= TEXT_MAX or found or _URL_LINE.match(line.strip()):
        return [line]
    bullet = _BULLET.match(line)
    indent = " " * len(bullet.group(1)) if bullet else line[:len(line) - len(line.lstrip())]
    return textwrap.wrap(line, TEXT_MAX, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def _one_line(text: str) -> str:
    """Subject and preheader go into headers: never a CR or LF, whitespace folded."""
    return " ".join(text.split())


def preview_slots(config: Config, name: str = "Ada") -> dict[str, str]:
    """Example slot values for previews: what a subscriber's copy looks like, with dummy links."""
    base = config.newsletter.base_url
    return {
        "name": name,
        "email": "ada@example.org",
        "unsubscribe_url": f"{base}/unsubscribe/PREVIEW",
        "preferences_url": f"{base}/preferences/PREVIEW",
    }


