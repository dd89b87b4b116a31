"""The text rules behind ``classify``: what marks an auto-reply or an MTA notice, where a failed recipient and
its status hide in a human-readable bounce, and whether a failure is hard.

Hard or soft follows Sisimai's reasons, because that is what the corpus is measured against: hard means the
address will never work (userunknown, hostunknown, hasmoved, notaccept); everything else (mailboxfull, blocked,
filtered, policy, expired, rate limits, spam, too big, suspended, system errors, and "could not tell") is soft.
The words decide before the status code, because MTAs often put a permanent class on what is not for ever:
a 5.x.x "mailbox full" is soft, "550 5.7.1 blocked" is soft, "5.1.1 user unknown" is hard. "User unknown"
alone is hard only with an x.1.x code or when the rejection came at RCPT TO: a content filter after DATA
writes the same words (Sisimai's "filtered"). With no words and no code the answer is soft: the next bounce
can still tell that an address is dead, while a wrongly hard verdict loses a reader for good.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email.message import Message

from flufl.bounce import all_failures

MAX_DIAGNOSTIC = 500

# An RFC 3463 failure status (class 4 or 5, subject 0-7), not part of an IP address or a version number.
STATUS = re.compile(r"(?<![\w.])([45]\.[0-7]\.\d{1,3})(?![\w.]|\.\d)")
ADDRESS = re.compile(r"[\w!#$%&'*+/=?^`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")

# Words that make a failure soft whatever its code says (Sisimai: mailboxfull, mesgtoobig, exceedlimit,
# blocked, spamdetected, policyviolation, securityerror, rejected, suspend, toomanyconn, systemerror, expired).
SOFT = re.compile(
    r"mailbox (is )?full|(box|is) full|mailbox.{0,20}(exceed|over)|quota|insufficient (system )?storage"
    r"|storage (space|limit|exceeded)|mail ?box space not enough|too many messages"
    r"|(message|mail)( size)?.{0,20}(too (large|big)|exceeds?)|size limit|exceeds fixed maximum"
    r"|spam|junk|blocked|block ?list|black ?list|\brbl\b|reputation|policy|not allowed|prohibited|refused"
    r"|relay(ing)? (denied|not permitted|access denied)|authenticat|\bspf\b|dmarc|dkim|virus|content (filter|rej)"
    r"|not found, try again|rate limit|too many (connections|recipients|requests)|try (again )?later|temporar"
    r"|timed? ?out|time-out"
    r"|suspend|disabled|deactivated|inactive|locked|over (the )?limit|expired|delayed|smtp server of your isp",
    re.IGNORECASE,
)
# Words that make a failure hard wherever they appear: the host does not exist (hostunknown), the address has
# moved or takes no mail (hasmoved, notaccept), or an MTA's own words for its mailbox lookup failing.
HARD = re.compile(
    r"host (or domain name )?not found|domain (name )?not found|unknown (host|domain)|name service error"
    r"|no such domain|domain (does not|doesn't) exist|nxdomain|no (mx|mail exchanger)|has moved"
    r"|(does not|doesn't) accept (any )?mail|null mx|recipient name is not recognized"
    r"|invalid final delivery userid|not listed in (the )?(domino )?directory|no mailbox here by that name"
    r"|recipientnotfound|address (could not|couldn't|wasn.t) (be )?found|address not found",
    re.IGNORECASE,
)
# Words for an unknown user, which a content filter after DATA also writes: hard only when the notice shows
# the rejection came at RCPT TO or the code says x.1.x (Sisimai calls the rest "filtered", a soft reason).
USER = re.compile(
    r"user(name)? (is )?unknown|unknown (user|recipient|address|local|mailbox)|no such (user|mailbox|recipient"
    r"|address|account|person)|(user|recipient|mailbox|address|account)( name)? (was )?not found"
    r"|(recipient|user) not (listed|known|exist)|invalid (recipient|user|mailbox|address)|address rejected"
    r"|(does not|doesn't|not) exist|no mailbox|mailbox (is )?unavailable|mailbox not available|not a valid"
    r"|unrouteable|no longer (valid|available|active)|(user|address) (is )?(invalid|unavailable)"
    r"|bad (destination|recipient)|is not (a )?known user|unknown local part|not our customer|account (is )?closed",
    re.IGNORECASE,
)
AT_RCPT = re.compile(r"rcpt|does not like recipient|recipient address rejected|local recipient table", re.I)
# Enhanced status codes Sisimai turns into a hard reason when the text does not say otherwise.
HARD_STATUS = re.compile(r"5\.1\.(0|1|2|3|6|10)$|5\.4\.4$")

BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|non[- ]?deliver|delivery (status notification|failure|failed|problem|error"
    r"|notification|report)|(mail|message) delivery (failed|failure|problem|error)|returned mail|failure notice"
    r"|returned to sender|could not be delivered|not (be )?delivered|delivery has failed|mail (system )?error"
    r"|user unknown|unknown user|warning: could not send|delayed mail|postmaster notify|unzustellbar|non remis"
    r"|mail failure",
    re.IGNORECASE,
)
MAILER = re.compile(r"mailer-daemon|postmaster|mail delivery|mail administrator|mailer|mdaemon|bounce", re.I)

AUTO_SUBJECT = re.compile(
    r"^\s*(re:\s*)?(auto(matic)?[ -]?(reply|response|respond|antwort|answer|mated)|autoreply|out of (the )?office"
    r"|abwesenheit|abwesend|auto:|ooo\b|on (vacation|holiday|leave)|vacation|away from|i am (out|away)"
    r"|r[ée]ponse automatique|absence|respuesta autom|risposta automatica|automatisch antwoord|afwezig"
    r"|autosvar|automaattinen|fuera de la oficina|hors du bureau)"
    r"|\((automatic|auto) (response|reply)\)\s*$",
    re.IGNORECASE,
)
AUTO_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponder", "x-vacation")
VIA = {"precedence": "auto_reply", "x-autogenerated": "reply", "x-post-messageclass": "autoresponder"}

# Lines that start the returned original: nothing below them is the notice's own word on the failure.
ORIGINAL = re.compile(
    r"^\s*-*\s*(below this line is a copy|this is a copy of the message|original message|"
    r"the header of the original|header of the source mail|original message headers|"
    r"returned message|unsent message|undelivered message|content-type: message/rfc822|"
    r"message headers follow|----- ?transcript)",
    re.IGNORECASE | re.MULTILINE,
)
LIST_HEAD = re.compile(
    r"follow\w* (e-?mail )?(address|recipient|user|mailbox)|following (destination|address)|to these recipients"
    r"|your message to the following|could not (be )?deliver\w* to|failed permanently|undeliverable to"
    r"|rejected your message to|the following (mail|message)|permanent fatal errors|was undeliverable",
    re.IGNORECASE,
)
ANGLE_LINE = re.compile(r"^\s*<([^<>\s]+@[^<>\s]+)>\s*(:|\.\.\.|\s)", re.MULTILINE)
COLON_LINE = re.compile(r"^\s*([^\s<>:@]+@[A-Za-z0-9.-]+)\s*:", re.MULTILINE)
FIELD = re.compile(r"^\s*(?:final-recipient|original-recipient|x-actual-recipient)\s*:\s*(?:rfc822\s*;)?\s*<?"
                   r"([^\s<>;]+@[^\s<>;]+)", re.IGNORECASE | re.MULTILINE)
RCPT = re.compile(r"rcpt to:?\s*<([^<>\s]+@[^<>\s]+)>", re.IGNORECASE)
TO_LINE = re.compile(r"^to:\s*(.+)$", re.IGNORECASE | re.MULTILINE)
NOT_RECIPIENT = re.compile(r"^(mailer-daemon|postmaster|noreply|no-reply|abuse|fbl|bounce[s]?)([+@]|$)", re.I)


def one_line(text: str | None) -> str | None:
    """A diagnostic as one line of at most 500 characters, or None when there is nothing to say."""
    if not text:
        return None
    line = " ".join(text.split())
    return line[:MAX_DIAGNOSTIC] or None


def status_in(text: str | None) -> str | None:
    """The first RFC 3463 enhanced status code in the text."""
    match = STATUS.search(text or "")
    return match.group(1) if match else None


def is_hard(status: str | None, text: str | None, context: str = "") -> bool:
    """Hard only for an address that will never work; the words count before the code (see the module doc).
    ``context`` is the rest of the notice, asked only whether the rejection came at RCPT TO."""
    if status and status.startswith("4"):
        return False
    words = " ".join((text or "").split())
    context = " ".join(context.split())
    if SOFT.search(words):
        return False
    if HARD.search(words):
        return True
    coded = bool(status and HARD_STATUS.match(status))
    if USER.search(words):
        return coded or bool(AT_RCPT.search(words) or AT_RCPT.search(context))
    return coded


def telling(text: str) -> bool:
    """Whether the words say anything about the failure (a code, or words a rule knows)."""
    return any(p.search(text) for p in (STATUS, HARD, USER, SOFT))


def normalize(address: str) -> str | None:
    """An address as found, its domain lowercased; None for anything that is not one."""
    address = address.strip().strip("<>\"'()[],;.").removeprefix("mailto:")
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain or len(address) > 320:
        return None
    return f"{local}@{domain.lower().rstrip('.')}"


def auto_reply_mark(msg: Message, subject: str, weak: bool) -> str | None:
    """Why the message is an RFC 3834 auto-reply, or None. ``weak`` also counts Auto-Submitted, which bounces
    carry too: it is asked only once the message has shown no sign of an MTA notice."""
    for name in AUTO_HEADERS:
        if msg.get(name) is not None:
            return f"{name.title()} header"
    for name, value in VIA.items():
        if value in str(msg.get(name, "")).lower():
            return f"{name.title()}: {value}"
    if AUTO_SUBJECT.search(subject):
        return f"auto-reply subject: {subject[:80]}"
    submitted = str(msg.get("auto-submitted", "")).strip().lower()
    if weak and submitted and not submitted.startswith("no"):
        return f"Auto-Submitted: {submitted.split(';')[0].split()[0]}"
    return None


def bounce_mark(msg: Message, subject: str) -> str | None:
    """Why the message looks like an MTA's notice (a bounce in some format), or None."""
    if msg.get("x-failed-recipients"):
        return "X-Failed-Recipients header"
    sender = str(msg.get("from", ""))
    if MAILER.search(sender):
        return f"notice from {one_line(sender)}"
    if BOUNCE_SUBJECT.search(subject):
        return f"bounce subject: {subject[:80]}"
    return None


def flufl_failures(msg: Message) -> tuple[str, list[tuple[str, bool | None]]]:
    """flufl.bounce's answer: the detector that recognised the message and its (address, permanent) pairs.

    The detectors are run one by one, as ``all_failures`` does, to name the one that answered; if the private
    list is ever gone, ``all_failures`` is asked and the answer is credited to flufl.bounce as a whole."""
    try:
        from flufl.bounce._scan import _DETECTORS
    except ImportError:  # pragma: no cover - a future flufl.bounce that moved its list
        temporary, permanent = all_failures(msg)
        return "flufl.bounce", _pairs(temporary, permanent)
    for detector in _DETECTORS:
        try:
            temporary, permanent = detector().process(msg)
        except Exception:  # a detector tripping over a malformed message is just a detector that found nothing
            continue
        if temporary or permanent:
            return f"flufl.bounce {detector.__name__} detector", _pairs(temporary, permanent)
    return "flufl.bounce", []


def _pairs(temporary: Iterable[bytes], permanent: Iterable[bytes]) -> list[tuple[str, bool | None]]:
    found = [(raw, True) for raw in permanent] + [(raw, False) for raw in temporary]
    pairs: list[tuple[str, bool | None]] = []
    for raw, hard in found:
        address = normalize(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))
        if address:
            pairs.append((address, hard))
    return pairs


def split_original(text: str) -> tuple[str, str]:
    """The notice's own words, and the returned original below them."""
    match = ORIGINAL.search(text)
    return (text[: match.start()], text[match.start():]) if match else (text, "")


def text_recipients(notice: str, original: str) -> list[str]:
    """Failed recipients named in a human-readable notice, most telling pattern first; the To: of the
    returned original last (a newsletter copy has exactly one)."""
    found: list[str] = []
    for pattern in (FIELD, ANGLE_LINE, RCPT):
        found += [m.group(1) for m in pattern.finditer(notice)]
    found += _listed(notice)
    found += [m.group(1) for m in COLON_LINE.finditer(notice)]
    if not found:
        found += [a for m in TO_LINE.finditer(original) for a in ADDRESS.findall(m.group(1))]
    return found


def _listed(notice: str) -> list[str]:
    """Addresses in the lines right after a heading such as "The following address(es) failed:"."""
    found: list[str] = []
    for head in LIST_HEAD.finditer(notice):
        rest = notice[head.end():].split("\n")[1:40]
        for line in rest:
            if not line.strip():
                if found:
                    break
                continue
            found += ADDRESS.findall(line)
        if found:
            break
    return found


def paragraph_of(notice: str, address: str, lowered: str | None = None) -> str:
    """The notice's words about one address: its line and the lines under it, up to a blank line or a line
    that starts with another address; when that is the address alone, the paragraphs after it as well.
    ``lowered`` is ``notice.lower()``, for a caller asking about many addresses."""
    at = (notice.lower() if lowered is None else lowered).find(address.lower())
    if at < 0:
        return ""
    start = notice.rfind("\n", 0, at) + 1
    lines = notice[start:start + 8000].split("\n")
    words = [lines[0]]
    for line in lines[1:40]:
        if not line.strip() and len(" ".join(words)) > len(address) + 40:
            break
        head = ADDRESS.match(line.strip().lstrip("<*-"))
        if head and head.group(0).lower() != address.lower():
            break
        words.append(line)
    return "\n".join(words).strip()[:2000]


def keep(address: str, exclude: set[str]) -> bool:
    """Whether an address found in a notice can be the failed recipient: not one of the notice's own ends
    (``exclude``, lowercased), not a mailer's or an abuse desk's."""
    return address.lower() not in exclude and not NOT_RECIPIENT.match(address)
