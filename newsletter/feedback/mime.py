"""The MIME plumbing under the classifier: cutting a message down to what a rule reads, its leaves, its text, and
RFC 822-style field blocks (a DSN's or an ARF report's body), each bounded whatever the message holds."""

from __future__ import annotations

import html
import re
from email import message_from_string
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses

from . import rules

MAX_PARTS = 200
MAX_TEXT = 64 * 1024
MAX_HEADER = 64 * 1024
BOUNDARY = re.compile(r"^--([^\s\"]{1,70})[ \t\r]*$", re.MULTILINE)
TAGS = re.compile(r"<(style|script)\b.*?</\1>|<[^>]*>", re.IGNORECASE | re.DOTALL)
Fields = list[tuple[str, str]]
LEADING_BLANKS = re.compile(rb"\A(?:[ \t]*\r?\n)+")


def headed(raw: bytes) -> bytes:
    """The message from its first header on: blank lines before it (a message saved or pasted with a blank line
    on top, as three Exchange notices of PHP-Bounce-Handler's corpus are) would end the headers before the first."""
    return LEADING_BLANKS.sub(b"", raw, count=1)


def trim(msg: Message) -> None:
    """Drop what no rule reads (attachments that are not text) and cut long texts, at any depth, so a 20 MB
    attachment costs nothing after parsing; flufl.bounce's line scanners would otherwise read it all."""
    todo, seen = [msg], 0
    while todo and seen < 10 * MAX_PARTS:
        part, seen = todo.pop(), seen + 1
        payload = part.get_payload()
        if isinstance(payload, list):
            todo += [p for p in payload if isinstance(p, Message)]
        elif part.get_content_maintype() not in ("text", "message", "multipart"):
            part.set_payload("")
        elif isinstance(payload, str) and len(payload) > MAX_TEXT:
            part.set_payload(payload[:MAX_TEXT])


def parts(msg: Message) -> list[Message]:
    """The leaves of the notice, in order, without descending into a returned original (message/rfc822). A
    multipart whose boundary parameter was lost (folded onto a line of its own, as Office 365 writes it) is split
    at the boundary its body shows."""
    out: list[Message] = []
    todo = [msg]
    while todo and len(out) < MAX_PARTS:
        part = todo.pop(0)
        payload = part.get_payload()
        if part.get_content_maintype() == "multipart" and isinstance(payload, str):
            part = _repaired(part, payload)
            payload = part.get_payload()
        if part.get_content_maintype() == "multipart" and isinstance(payload, list):
            todo[0:0] = [p for p in payload if isinstance(p, Message)]
        else:
            out.append(part)
    return out


def _repaired(part: Message, payload: str) -> Message:
    found = BOUNDARY.search(payload)
    if not found:
        return part
    fixed = message_from_string(f'Content-Type: {part.get_content_type()}; boundary="{found.group(1)}"\n\n{payload}')
    return fixed if isinstance(fixed.get_payload(), list) else part


def text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        found = payload[:MAX_TEXT].decode(charset, "replace")
    except LookupError:
        found = payload[:MAX_TEXT].decode("latin-1")
    if part.get_content_type() == "text/html":
        found = html.unescape(TAGS.sub(" ", found))
    return found.replace("\r\n", "\n")


def notice_text(leaves: list[Message]) -> str:
    """The notice's human-readable text: its plain parts, or its HTML ones with the tags taken out."""
    for kind in ("text/plain", "text/html", "multipart"):  # the last: a multipart with no boundary to split at
        texts = [text(p) for p in leaves if kind in (p.get_content_type(), p.get_content_maintype())]
        if any(t.strip() for t in texts):
            return "\n".join(texts)[:MAX_TEXT]
    return ""


def header(msg: Message, name: str) -> str:
    value = msg.get(name)
    return "" if value is None else str(value)[:MAX_HEADER]


def subject(msg: Message) -> str:
    raw = header(msg, "subject")
    try:
        return " ".join(str(make_header(decode_header(raw))).split())
    except Exception:  # an undecodable encoded word: the raw text is still worth matching
        return " ".join(raw.split())


def addresses(values: list[str]) -> list[str]:
    found = (rules.normalize(address) for _, address in getaddresses(values))
    return [a for a in found if a]


def param(msg: Message, name: str) -> str:
    value = msg.get_param(name)
    return (value[2] if isinstance(value, tuple) else str(value or "")).strip().lower()


def blocks(body: str) -> list[Fields]:
    """RFC 822-style field blocks (a DSN's or an ARF report's body), split at blank lines."""
    found: list[Fields] = []
    for chunk in re.split(r"\n\s*\n", body.replace("\r\n", "\n")):
        fields: Fields = []
        for line in chunk.split("\n"):
            if line[:1] in (" ", "\t") and fields:
                fields[-1] = (fields[-1][0], f"{fields[-1][1]} {line.strip()}")
            elif ":" in line:
                name, _, value = line.partition(":")
                fields.append((name.strip().lower(), value.strip()))
        if fields:
            found.append(fields)
    return found


def fields(part: Message) -> list[Fields]:
    """The field blocks of a message/delivery-status or message/feedback-report part, however it was parsed."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return blocks(text(part) or str(payload))
    found = []
    for sub in payload:
        if isinstance(sub, Message):
            found.append([(k.lower(), " ".join(str(v).split())) for k, v in sub.items()])
            body = sub.get_payload()
            if isinstance(body, str) and ":" in body:
                found += blocks(body)
    return found


def first(block: Fields, *names: str) -> str:
    for want in names:
        for name, value in block:
            if name == want and value:
                return value
    return ""


def original_headers(leaves: list[Message], name: str) -> list[str]:
    """A header of the returned original, attached whole (message/rfc822) or as headers (text/rfc822-headers)."""
    for part in leaves:
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return [str(v) for v in inner[0].get_all(name, [])]
        if part.get_content_type() == "text/rfc822-headers":
            return [str(v) for v in HeaderParser().parsestr(text(part), headersonly=True).get_all(name, [])]
    return []
