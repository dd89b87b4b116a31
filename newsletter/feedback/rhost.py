"""Remote hosts whose replies Sisimai reads its own way (lib/Sisimai/Rhost.pm and Rhost/<Name>.pm, 4.25.15,
BSD-2-Clause): a rule per host, chosen by the host the failure came from (a DSN's Remote-MTA, else the notice's
first Received header) or by the recipient's domain, and asked before the generic reasons. Their code and phrase
tables are copied from the modules, written here one entry a line: "reason|status or reply code|words"."""

from __future__ import annotations

import re
from collections.abc import Callable

from . import reasons, rhost_tables

Rule = Callable[[reasons.Failure], str]


def _table(text: str) -> list[tuple[str, ...]]:
    return [tuple(line.strip().split("|")) for line in text.strip().split("\n")]


def _first(table: list[tuple[str, ...]], test: Callable[[tuple[str, ...]], bool]) -> str:
    return next((row[0] for row in table if test(row)), "")


COX_CODES: dict[str, str] = dict(_table("""
CXBL|blocked
CXTHRT|securityerror
CXMJ|securityerror
CXDNS|blocked
CXSNDR|rejected
CXSMTP|rejected
CXCNCT|toomanyconn
CXMXRT|toomanyconn
CDRBL|blocked
IPBL00001|blocked
URLBL011|spamdetected
URLBL101|spamdetected
URLBL110|spamdetected
URLBL1001|spamdetected"""))  # type: ignore[arg-type]
COX_WORDS = _table("""
blocked|rejected - no rDNS
blocked|cox too many bad commands from
blocked|DNS check failure - try again later
blocked|Too many invalid recipients
notaccept|ESMTP server temporarily not available
policyviolation|ESMTP no data before greeting
policyviolation|attachment extension is forbidden
rejected|sender rejected
toomanyconn|too many sessions from
toomanyconn|requested action aborted: try again later
toomanyconn|Message threshold exceeded
userunknown|recipient rejected""")


def cox(f: reasons.Failure) -> str:
    code = re.search(r"AUP#([0-9A-Z]+)", f.diagnostic)
    name = code.group(1) if code else ""
    found = COX_CODES.get(name) or ("blocked" if re.fullmatch(r"IPBL[01]{4}", name) else "")
    return found or _first(COX_WORDS, lambda row: row[1] in f.diagnostic)


FRANCE: dict[str, str] = dict(_table("""
101|blocked
102|blocked
103|blocked
104|toomanyconn
305|securityerror
401|blocked
402|securityerror
403|rejected
405|rejected
415|rejected
416|userunknown
417|mailboxfull
418|userunknown
420|suspend
421|rejected
426|suspend
505|systemerror
506|spamdetected
510|blocked
514|mesgtoobig
517|policyviolation
630|policyviolation
999|blocked"""))  # type: ignore[arg-type]


def france_ptt(f: reasons.Failure) -> str:
    if f.reason:
        return f.reason
    code = re.search(r"\b(LPN|LPNAAA|OFR|OUK)(_[0-9]{3}|[0-9]{3}[-_][0-9]{3})\b", f.diagnostic, re.IGNORECASE)
    return FRANCE.get((code.group(1) + code.group(2))[-3:], "undefined") if code else ""


GODADDY_CODES: dict[str, str] = dict(_table("""
IB103|blocked
IB104|blocked
IB105|blocked
IB106|blocked
IB007|toomanyconn
IB101|expired
IB108|blocked
IB110|blocked
IB111|blocked
IB112|blocked
IB113|blocked
IB212|spamdetected
IB401|securityerror
IB501|rejected
IB502|rejected
IB504|toomanyconn
IB506|rejected
IB508|rejected
IB510|toomanyconn
IB607|toomanyconn
IB705|virusdetected"""))  # type: ignore[arg-type]
GODADDY_WORDS = _table("""
blocked|www.spamhaus.org/query/bl?ip=
blocked|554 RBL Reject.
expired|Delivery timeout
expired|451 Sorry, I wasn't able to establish an SMTP connection.
suspend|Account disabled
mailboxfull|Account storage limit
userunknown|Account does not exist
userunknown|550 Recipient not found.""")


def godaddy(f: reasons.Failure) -> str:
    if f.reason:
        return f.reason
    code = re.search(r"\s(IB\d{3})\b", f.diagnostic)
    if code:
        return GODADDY_CODES.get(code.group(1), "")
    return _first(GODADDY_WORDS, lambda row: row[1] in f.diagnostic)


def iua(f: reasons.Failure) -> str:
    codes = {"1": "norelaying", "2": "userunknown", "3": "suspend", "4": "mailboxfull", "5": "toomanyconn",
             "6": "norelaying", "7": "blocked", "8": "rejected", "9": "blocked", "10": "filtered"}
    code = re.search(r"\.i\.ua/err/(\d+)", f.diagnostic.lower())
    return codes.get(code.group(1), "") if code else ""


def kddi(f: reasons.Failure) -> str:
    if "550 : User unknown" in f.diagnostic:
        return "filtered"
    return "userunknown" if ">: User unknown" in f.diagnostic else ""


def nttdocomo(f: reasons.Failure) -> str:
    words = f.diagnostic.lower()
    if f.status in ("5.1.1", "5.0.911"):
        return "userunknown"
    if f.status == "5.2.0":
        return "filtered"
    for reason, pattern in (("mailboxfull", r"552 too much mail data"), ("toomanyconn", r"552 too many recipients"),
                            ("syntaxerror", r"503 bad sequence of commands|504 command parameter not implemented")):
        if re.search(pattern, words):
            return reason
    if f.status == "5.0.0":
        return {"RCPT": "userunknown", "DATA": "rejected"}.get(f.command, "")
    return ""


SPECTRUM = {1000: "blocked", 1010: "rejected", 1090: "systemerror", 1260: "networkerror", 1500: "rejected",
            1520: "rejected", 1530: "mesgtoobig", 1540: "toomanyconn", 1550: "toomanyconn", 1560: "policyviolation"}
SPECTRUM_RANGES = ((1020, 1080, "rejected"), (1100, 1150, "blocked"), (1160, 1190, "policyviolation"),
                   (1200, 1210, "blocked"), (1220, 1250, "blokced"), (1300, 1340, "toomanyconn"),
                   (1350, 1490, "toomanyconn"))  # "blokced": Sisimai 4.25.15's own spelling, kept


def spectrum(f: reasons.Failure) -> str:
    code = re.search(r"AUP#[-A-Za-z]*(\d{4})", f.diagnostic)
    number = int(code.group(1)) if code else 0
    return SPECTRUM.get(number) or next((r for low, high, r in SPECTRUM_RANGES if low <= number <= high), "")


TENCENT = _table("""
blocked|dmarc check failed
blocked|spf check failed
blocked|suspected spam ip
filtered|mail is rejected by recipients
mesgtoobig|message too large
spamdetected|mail content denied
spamdetected|spam is embedded in the email
spamdetected|suspected spam
syntaxerror|bad address syntax
toomanyconn|connection denied
toomanyconn|connection frequency limited
toomanyconn|domain frequency limited
toomanyconn|ip frequency limited
toomanyconn|sender frequency limited
toomanyconn|mailbox unavailable or access denied
userunknown|mailbox not found""")


def tencent(f: reasons.Failure) -> str:
    words = f.diagnostic.lower()
    return _first(TENCENT, lambda row: row[1] in words)


HOSTS: tuple[tuple[re.Pattern[str], Rule], ...] = (
    (re.compile(r"cox\.net"), cox),
    (re.compile(r"\.(?:prod|protection)\.outlook\.com$"), rhost_tables.exchange_online),
    (re.compile(r"\b(?>laposte\.net|(?:orange|wanadoo)\.fr)$"), france_ptt),
    (re.compile(r"^(?:smtp|mailstore1)\.secureserver\.net$"), godaddy),
    (re.compile(r"(?:aspmx|gmail-smtp-in)\.l\.google\.com$"), rhost_tables.google_apps),
    (re.compile(r"\.email\.ua$"), iua),
    (re.compile(r"\.(?:ezweb\.ne\.jp|au\.com)$"), kddi),
    (re.compile(r"\.mimecast\.com$"), rhost_tables.mimecast),
    (re.compile(r"mfsmax\.docomo\.ne\.jp$"), nttdocomo),
    (re.compile(r"charter\.net"), spectrum),
    (re.compile(r"mx[0-9]+\.qq\.com$"), tencent))


def rule_for(host: str) -> Rule | None:
    """The rule for a remote host name (or a recipient's domain), if Sisimai has one (Sisimai::Rhost ``match``)."""
    host = host.lower().strip()
    return next((rule for pattern, rule in HOSTS if pattern.search(host)), None) if host else None
