"""Attacks on the tracked paper links (#25, ``/r/<token>``): the issue really sent through an aiosmtpd server with
[tracking] clicks on, the real app following what an attacker sends it, on a real SQLite file. The bar: never a
redirect anywhere but to a link of the issue the token names, as its file has it, and nothing counted that a
scanner did."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import pytest

from newsletter.clicks import CLICK
from newsletter.links import PREFERENCES, UNSUBSCRIBE, Links

from ..test_clicks import BASE, BROWSER, ISSUE, SECRET, START, html_links, send, sqlite_url, targets, tracked  # noqa: F401  (fixtures)

OTHER = "2026-05-17"  # the repository's other issue


def first_link(sent) -> tuple[str, str]:
    """ann's first tracked link as a path, and its token."""
    path = tracked(html_links(sent.copies["ann@example.org"]))[0].removeprefix(BASE)
    return path, path.rsplit("/", 1)[1]


def follow(sent, paths: list[str], **headers: str) -> list[tuple[int, str | None]]:
    with sent.client() as client:
        answers = [client.get(p, headers={"User-Agent": BROWSER, **headers}) for p in paths]
    return [(a.status_code, a.headers.get("location")) for a in answers]


@pytest.mark.attack(edge="web", attack="tracked link with its signature, paper, kind or time altered",
                    held="404, no Location, nothing counted")
def test_a_tampered_token_leads_nowhere(send, sqlite_url):  # noqa: F811
    """Any change to a token, in its signature or in the value it signs, is a 404 page with no redirect and no count."""
    sent = send(sqlite_url)
    path, token = first_link(sent)
    value, signature = token.rsplit(".", 1)
    slug, paper, kind, made = value.rsplit(".", 3)
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    forged = [f"{value}.{flipped}", f"{slug}.arxiv-2605-28760.{kind}.{made}.{signature}",
              f"{slug}.{paper}.c.{made}.{signature}", f"{slug}.{paper}.{kind}.{int(made) - 3600}.{signature}",
              value, token[:-5], f"{token}x", token.upper()]
    answers = follow(sent, [f"/r/{t}" for t in forged])
    assert answers == [(404, None)] * len(forged) and sent.total() == 0
    assert follow(sent, [path]) == [(302, "https://arxiv.org/abs/2605.28293")]


@pytest.mark.attack(edge="web", attack="tracked link of one issue pointed at another issue's paper",
                    held="404: a token leads only to a link of the issue and paper it names")
def test_a_token_cannot_be_replayed_for_another_issues_target(send, sqlite_url):  # noqa: F811
    """A real token with its issue renamed fails its signature; even a token the engine's key signed (as a sizing
    run of another issue would) leads only to a link the issue it names has: that issue's own paper, never this
    one's."""
    sent = send(sqlite_url)
    _, token = first_link(sent)
    value, signature = token.rsplit(".", 1)
    renamed = value.replace(ISSUE, OTHER, 1)
    key = Links(SECRET, BASE)
    signed_elsewhere = key.sign(CLICK, renamed)  # issue 2026-05-17, paper of 2026-05-28: not in that issue
    answers = follow(sent, [f"/r/{renamed}.{signature}", f"/r/{signed_elsewhere}"])
    assert answers == [(404, None), (404, None)] and sent.total() == 0


@pytest.mark.attack(edge="web", attack="URL smuggled into a tracked link (query, path, encoded, Host header, signed "
                    "value holding a URL)", held="never redirected off the issue's own links")
def test_no_url_from_the_request_is_ever_a_redirect_target(send, sqlite_url):  # noqa: F811
    """A target in the query, after the token, as the token, percent-encoded, in a signed value, or a foreign Host:
    the only Location ever given is a link of the issue's own papers."""
    sent = send(sqlite_url)
    path, token = first_link(sent)
    evil = "https://evil.example/phish"
    key = Links(SECRET, BASE)
    tries = [f"{path}?url={quote(evil)}&next={quote(evil)}", f"{path}/{evil}", f"/r/{quote(evil, safe='')}",
             f"/r/{evil}", "/r//evil.example", f"/r/{key.sign(CLICK, f'{ISSUE}.{evil}.p.1')}",
             f"/r/{key.sign(CLICK, f'{evil}.arxiv-2605-28293.p.1')}"]
    answers = follow(sent, tries)
    allowed = targets(sent, ("RL",))
    assert answers[0] == (302, "https://arxiv.org/abs/2605.28293")
    assert all(status == 404 and location is None for status, location in answers[1:]), answers
    with sent.client() as client:
        foreign = client.get(path, headers={"Host": "evil.example", "User-Agent": BROWSER})
    assert foreign.status_code == 400 and "location" not in foreign.headers
    assert all(location in allowed for _, location in answers if location)


@pytest.mark.attack(edge="web", attack="mail gateway following every link of a copy on arrival (HEAD, its own "
                    "User-Agent, a browser's within seconds)", held="each redirected, none counted")
def test_a_scanner_following_every_link_on_arrival_counts_nothing(send, sqlite_url):  # noqa: F811
    """A gateway that fetches each link of a copy as it arrives, with HEAD, with its own User-Agent and disguised as
    a browser seconds after delivery, gets every redirect and adds no click."""
    sent = send(sqlite_url)
    paths = [u.removeprefix(BASE) for u in tracked(html_links(sent.copies["cat@example.org"]))]
    arrival = sent.config.tracking.ignore_first_seconds / 2
    with sent.client(START + timedelta(seconds=arrival)) as client:
        answers = [client.head(p, headers={"User-Agent": BROWSER}) for p in paths]
        answers += [client.get(p, headers={"User-Agent": "Mimecast Safe Links"}) for p in paths]
        answers += [client.get(p, headers={"User-Agent": BROWSER}) for p in paths]
    assert {a.status_code for a in answers} == {302} and sent.total() == 0


@pytest.mark.attack(edge="web", attack="a reader's unsubscribe or preferences token used as a click token",
                    held="404: each kind of token has its own salt")
def test_another_kind_of_signed_token_is_no_click_token(send, sqlite_url):  # noqa: F811
    """Tokens the engine signs for other purposes do not verify as click links (itsdangerous salt per kind)."""
    sent = send(sqlite_url)
    key = Links(SECRET, BASE)
    answers = follow(sent, [f"/r/{key.token(UNSUBSCRIBE, 1)}", f"/r/{key.token(PREFERENCES, 1)}"])
    assert answers == [(404, None), (404, None)] and sent.total() == 0
