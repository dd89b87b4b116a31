"""Deliverability of the headers (#15): RFC 8058 one-click only over https, DKIM relaxed/relaxed with
oversigning, Gmail's Feedback-ID, plain ASCII subjects, folded address headers, the 102 KB warning."""

from __future__ import annotations

import dataclasses
import re
from email.header import decode_header, make_header
from pathlib import Path

import dkim
import pytest

from newsletter.config import load_config
from newsletter.content import find_issue, load_issue
from newsletter.render import GMAIL_CLIP_BYTES, Renderer
from newsletter.send.compose import MAX_LINE, feedback_id, fold, prepare, sender_for, subject_header
from newsletter.send.groups import Groups
from newsletter.send.mailer import Mailer

from .conftest import REPO, invoke, parse
from .smtpd import smtp_server

ISSUE = "2026-05-28"
HTTP_WARNING = "is not https: List-Unsubscribe-Post (RFC 8058 one-click) is left out"


def config_for(make_config, port: int, base_url: str = "https://news.example.org", smtp: str = "",
               newsletter: str = "", paths: str = "") -> Path:
    return make_config(f"""
        [newsletter]
        secret_key = "headers-secret-0123456789abcdef0123456789"
        base_url = "{base_url}"
        {newsletter}
        [smtp]
        port = {port}
        timeout = 3
        {smtp}
        {paths}
        """)


def send_one(make_config, runner, base_url: str = "https://news.example.org", name: str = "Ada",
             areas: str = "RL", **kw: str) -> tuple[bytes, str]:
    """One subscriber, one real send through the test SMTP server: (the message as received, the CLI output)."""
    with smtp_server() as (handler, port):
        config = config_for(make_config, port, base_url, **kw)
        invoke(runner, config, "subscribers", "add", "ada@example.org", "--name", name, "--areas", areas)
        out = invoke(runner, config, "send", ISSUE).output
    (_, data), = handler.messages
    return data, out


def head_lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def raw_field(data: bytes, name: str) -> str:
    """A header field as written (continuation lines kept), without its name."""
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    found = re.search(rf"^{name}:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.MULTILINE | re.IGNORECASE)
    assert found, name
    return found.group(1)


# --- RFC 8058 one-click: only over https ----------------------------------------------------------


@pytest.mark.parametrize(("base_url", "one_click", "warned"), [
    ("https://news.example.org", True, False),
    ("http://news.example.org", False, True),
    ("http://127.0.0.1:8000", False, False),
    ("http://localhost:8000", False, False),
    ("http://[::1]:8000", False, False),
])
def test_one_click_header_only_with_an_https_base_url(make_config, runner, base_url, one_click, warned):
    """List-Unsubscribe-Post is sent only for https; http off loopback gets one warning line from `send`,
    and the mailto: stays in List-Unsubscribe either way."""
    data, out = send_one(make_config, runner, base_url)
    msg = parse(data)
    assert (msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click") is one_click
    assert ("List-Unsubscribe-Post" in msg) is one_click
    https, mailto = [u.strip().strip("<>") for u in msg["List-Unsubscribe"].split(",")]
    assert https.startswith(f"{base_url}/unsubscribe/") and mailto.startswith("mailto:")
    assert out.count(HTTP_WARNING) == (1 if warned else 0)
    if warned:
        line, = (x for x in out.splitlines() if HTTP_WARNING in x)
        assert base_url in line and "mailto:" in line


@pytest.mark.parametrize(("base_url", "warned"), [("http://news.example.org", True),
                                                  ("https://news.example.org", False),
                                                  ("http://localhost", False)])
def test_issue_check_warns_once_about_an_http_base_url(make_config, runner, base_url, warned):
    """`issue check` of every issue names an http base_url in exactly one line, and still exits 0."""
    config = config_for(make_config, 2525, base_url)
    out = invoke(runner, config, "issue", "check").output
    assert out.count(HTTP_WARNING) == (1 if warned else 0)
    assert out.count("ok  ") == len(list((REPO / "issues").glob("*.toml")))


# --- DKIM: relaxed/relaxed, oversigned, only present headers ---------------------------------------


def dkim_tags(data: bytes) -> dict[str, str]:
    """The DKIM-Signature's tags, whitespace removed (as RFC 6376 3.2 reads them)."""
    field = raw_field(data, "DKIM-Signature")
    return {k.strip(): "".join(v.split()) for k, v in (t.split("=", 1) for t in field.split(";") if t.strip())}


def refold(data: bytes, name: bytes) -> bytes:
    """What a relay may do to a field: unfold it and fold it again, one word a line, other whitespace."""
    head, body = data.split(b"\r\n\r\n", 1)
    fields = re.split(rb"\r\n(?![ \t])", head)
    for i, field in enumerate(fields):
        if field.lower().startswith(name.lower() + b":"):
            words = field.split(b":", 1)[1].split()
            fields[i] = name + b":  " + b" \r\n\t ".join(words)
    return b"\r\n".join(fields) + b"\r\n\r\n" + body


def with_field(data: bytes, field: bytes) -> bytes:
    """The message with one more header field, added at the end of the header as a relay would."""
    head, body = data.split(b"\r\n\r\n", 1)
    return head + b"\r\n" + field + b"\r\n\r\n" + body


@pytest.mark.parametrize("base_url", ["https://news.example.org", "http://news.example.org"])
def test_dkim_is_relaxed_oversigned_and_names_only_present_headers(make_config, runner, dkim_key, base_url):
    """c=relaxed/relaxed; h= names every signed field the message has plus From, Subject, List-Unsubscribe
    and List-Unsubscribe-Post once more; a refolded Subject still verifies, a second one does not."""
    pem, dns = dkim_key
    long_name = "Ada Augusta King, Countess of Lovelace and Patron of the Analytical Engine"
    data, _ = send_one(make_config, runner, base_url, name=long_name,
                       smtp=f'dkim_key_file = "{pem}"\ndkim_selector = "nl2026"')
    tags = dkim_tags(data)
    assert tags["c"] == "relaxed/relaxed" and tags["d"] == "example.org"
    signed = tags["h"].lower().split(":")
    present = [k.lower() for k in parse(data).keys() if k.lower() != "dkim-signature"]
    for name in ("from", "subject", "list-unsubscribe", "list-unsubscribe-post"):
        assert signed.count(name) == present.count(name) + 1, name
    assert {"to", "date", "message-id", "list-id", "feedback-id", "mime-version", "content-type"} <= set(signed)
    assert set(signed) - set(present) <= {"list-unsubscribe-post"}  # absent only when oversigned
    assert ("list-unsubscribe-post" in present) is base_url.startswith("https://")
    assert dkim.verify(data, dnsfunc=dns)
    for name in (b"Subject", b"To", b"List-Unsubscribe", b"From"):
        assert dkim.verify(refold(data, name), dnsfunc=dns), name
    head, body = data.split(b"\r\n\r\n", 1)
    padded = head + b"\r\n\r\n" + body.replace(b"==\r\n", b"==  \r\n", 1)  # blanks after the first boundary
    assert padded != data and dkim.verify(padded, dnsfunc=dns)  # relaxed body: trailing blanks do not count
    for added in (b"Subject: added in transit", b"From: someone@else.example",
                  b"List-Unsubscribe: <https://evil.example/u>", b"List-Unsubscribe-Post: List-Unsubscribe=One-Click"):
        assert not dkim.verify(with_field(data, added), dnsfunc=dns), added


# --- Feedback-ID ----------------------------------------------------------------------------------


def test_feedback_id_names_issue_group_and_sender_domain(make_config, runner):
    """Each copy carries Feedback-ID <issue date>:<its group>:newsletter:<sender domain> (Gmail's a:b:c:SenderId)."""
    data, _ = send_one(make_config, runner, areas="Vision;RL",
                       newsletter='from = "Weekly <digest@news.example.org>"')
    assert parse(data)["Feedback-ID"] == f"{ISSUE}:vision-rl:newsletter:news.example.org"


def test_feedback_id_fields_cannot_carry_a_colon_or_a_line_break():
    """Whatever the fields hold, Feedback-ID keeps four colon-separated fields on one line."""
    value = feedback_id("2026-05-28\r\nBcc: x@evil.example", "llm:rl", "bad domain:\n.example")
    assert len(value.split(":")) == 4 and not set(value) & set("\r\n\t ")
    assert value.split(":")[2] == "newsletter" and value.startswith("2026-05-28-Bcc-x-evil.example:")


# --- Subject and address headers -----------------------------------------------------------------


@pytest.fixture
def one_group(repo_config):
    issue = load_issue(find_issue(repo_config.path("issues"), ISSUE), repo_config.newsletter.areas)
    group = Renderer(repo_config).render(issue, ("RL",))
    assert group is not None
    return group


@pytest.mark.parametrize("subject", ["Top-conf Paper Digest - RL", "A =?utf-8?q?tricky?= subject",
                                     "Über Papers · RL", "Weekly papers " * 10])
def test_ascii_subject_is_plain_and_non_ascii_is_encoded(one_group, subject):
    """An ASCII subject is written as it is (folded when long); non-ASCII or '=?' ones are RFC 2047 encoded;
    every one parses back to the same text."""
    sender = sender_for("Weekly", "Weekly <digest@example.org>", "")
    head = prepare(dataclasses.replace(one_group, subject=subject), sender).head
    field = raw_field(head, "Subject")
    plain = subject.isascii() and "=?" not in subject
    assert ("=?utf-8?" in field) is not plain
    if plain:
        assert " ".join(field.split()) == " ".join(subject.split())
    assert all(len(line) <= MAX_LINE for line in head.split(b"\r\n"))
    assert parse(head + b"\r\n")["Subject"] == subject.strip()


def test_subject_header_helper_matches_the_written_header():
    """``subject_header`` writes an ASCII subject without any encoded word."""
    assert subject_header("Top-conf Paper Digest") == "Subject: Top-conf Paper Digest"
    assert subject_header("Top-conf · RL").startswith("Subject: =?utf-8?")


@pytest.mark.parametrize("name", [
    "Ada Augusta King, Countess of Lovelace (Patron of the Analytical Engine, London, 1843)",
    "Zoë Ünïcode-Long, Gräfin von Überlänge und Straße zu Ölmühle-Weißenfels",
    "A" * 90,
])
def test_long_display_names_are_folded(make_config, runner, name):
    """A long From or To display name is folded at its spaces (lines within 78 where the words allow, never
    over 998) and reads back as the same name."""
    quoted = name.replace(",", "")  # the configured From: a comma would start a second address
    data, _ = send_one(make_config, runner, name=name, newsletter=f'from = "{quoted} <digest@example.org>"')
    lines = head_lines(data)
    assert max(len(x) for x in lines) <= 998
    for field in ("To", "From"):
        raw = raw_field(data, field)
        assert "\r\n" in raw or len(field) + 1 + len(raw) <= MAX_LINE
        if " " in name:
            assert all(len(line) <= MAX_LINE for line in f"{field}:{raw}".split("\r\n")), field
        # RFC 2047 readers drop the space between encoded words; Python's own parser keeps it
        decoded = str(make_header(decode_header(raw.replace("\r\n", ""))))
        want = name if field == "To" else quoted
        assert " ".join(decoded.replace('"', "").split()).startswith(" ".join(want.split()))
    assert parse(data)["To"].addresses[0].addr_spec == "ada@example.org"
    if name.isascii():
        assert parse(data)["To"].addresses[0].display_name == name


def test_fold_only_adds_line_breaks():
    """Unfolding a folded line gives it back; no folded line starts with anything but one space."""
    line = "To: " + " ".join(f"word{i:03d}" for i in range(60)) + " <a@example.org>"
    folded = fold(line)
    assert folded.replace("\r\n", "") == line and folded.count("\r\n") >= 5
    assert all(len(x) <= MAX_LINE and x.strip() for x in folded.split("\r\n"))
    assert fold("Subject: short") == "Subject: short"


# --- Gmail clips above 102 KB -----------------------------------------------------------------------


def big_issue(folder: Path, copies: int) -> Path:
    """The shipped issue with its first paper (LLM only) copied ``copies`` times: LLM groups grow past 102 KB."""
    text = (REPO / "issues" / f"{ISSUE}.toml").read_text(encoding="utf-8")
    start = text.index("[[papers]]")
    first = text[start:text.index("[[papers]]", start + 1)]
    extra = "".join(first.replace('title = "ZO', f'title = "Copy {n}: ZO').replace('"2605.28760"', f'"2605.9{n:04d}"')
                    for n in range(copies))
    folder.mkdir()
    (folder / f"{ISSUE}.toml").write_text(text + "\n" + extra, encoding="utf-8")
    return folder


def sizes(config_path: Path) -> dict[str, int]:
    """Each group's message size as `send` builds it, for comparing with what the warning says."""
    config = load_config(config_path)
    issue = load_issue(find_issue(config.path("issues"), ISSUE), config.newsletter.areas)
    mailer = Mailer(config)
    groups = Groups(config, issue, dataclasses.replace(mailer.sender, campaign=issue.slug))
    from newsletter.links import Links

    links = Links("headers-secret-0123456789abcdef0123456789", config.newsletter.base_url)
    return {k: mailer.size(p, links) for k in groups.by_key if (p := groups.get(k)) is not None}


def test_issue_check_and_send_warn_per_group_over_gmails_clip(make_config, runner, tmp_path):
    """Each group whose message is over 102 KB gets one line naming it and its size, from `issue check`
    and from `send`; smaller groups get none, and the copy received is as big as the warning said."""
    folder = big_issue(tmp_path / "issues", copies=12)
    paths = f'[paths]\nissues = "{folder}"\ntemplates = "{REPO / "templates" / "email"}"'
    with smtp_server() as (handler, port):
        config = config_for(make_config, port, paths=paths)
        big = {k: n for k, n in sizes(config).items() if n > GMAIL_CLIP_BYTES}
        assert big and len(big) < len(sizes(config))  # some groups are over, some are not
        assert all("llm" in k or k == "all" for k in big)
        checked = invoke(runner, config, "issue", "check", ISSUE).output
        invoke(runner, config, "subscribers", "add", "ada@example.org", "--areas", "LLM")
        sent = invoke(runner, config, "send", ISSUE).output
    for out in (checked, sent):
        lines = [x for x in out.splitlines() if "Gmail clips" in x]
        assert len(lines) == len(big), out
        for key, size in big.items():
            line, = (x for x in lines if f"group {key}:" in x)
            said = re.search(r"is ([0-9.]+) KB", line)
            assert said and abs(float(said.group(1)) * 1024 - size) < 100 and "102 KB" in line
    (_, data), = handler.messages
    assert abs(len(data) - big["llm"]) < 1024


def test_shipped_issues_get_no_size_warning(make_config, runner):
    """The shipped issues are under 102 KB in every group, so `issue check` says nothing about size."""
    out = invoke(runner, config_for(make_config, 2525), "issue", "check").output
    assert "Gmail clips" not in out and "warning" not in out


def test_issue_check_needs_no_dkim_key(make_config, runner, tmp_path):
    """`issue check` where the sending host's DKIM key is not readable still sizes and passes every issue."""
    config = config_for(make_config, 2525, smtp=f'dkim_key_file = "{tmp_path / "absent.pem"}"\ndkim_selector = "s"')
    out = invoke(runner, config, "issue", "check").output
    assert "error" not in out and out.count("ok  ") == len(list((REPO / "issues").glob("*.toml")))
