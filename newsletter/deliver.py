"""The send engine: render each group once, then workers claim rows and deliver them over SMTP.

It depends on two seams only, a SQLAlchemy engine (the outbox) and ``Connection`` (the relay), so
tests run it against a real SQLite or PostgreSQL database and a real aiosmtpd server.
One thread per SMTP connection: the work per message is small (slot filling and headers, 40 to
70 µs measured, and one short transaction) and the rest is waiting on the relay and the kernel,
which threads overlap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from . import outbox, store
from .config import Config, SmtpSection
from .content import Issue
from .errors import ConfigError, SendFault
from .links import PREFERENCES, UNSUBSCRIBE, Links
from .message import DkimSigner, Envelope, PreparedGroup, Sender, header_safe, message_id, prepare, sender_for
from .outbox import Row, utcnow
from .render import Renderer, all_groups, group_key, normalize_areas, split_papers
from .smtp import Connection, Outcome, Result

CLAIM_BATCH = 50
IDLE_SECONDS = 1.0


class RateLimit:
    """Messages per second and per hour, shared by the threads of this process."""

    def __init__(self, per_second: float, per_hour: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second, self.per_hour, self.clock = per_second, per_hour, clock
        self._lock = threading.Lock()
        self._next = 0.0
        self._hour: list[float] = []

    def wait(self, stop: threading.Event) -> None:
        if not self.per_second and not self.per_hour:
            return
        with self._lock:
            now = self.clock()
            start = max(now, self._next)
            if self.per_hour:
                self._hour = [t for t in self._hour if t > now - 3600]
                if len(self._hour) >= self.per_hour:
                    start = max(start, self._hour[0] + 3600)
                self._hour.append(start)
            self._next = start + (1 / self.per_second if self.per_second else 0)
        if start > now:
            stop.wait(start - now)


class Groups:
    """Each group rendered and its MIME parts prepared at most once, on first use, thread-safe."""

    def __init__(self, config: Config, issue: Issue, renderer: Renderer | None = None) -> None:
        self.renderer = renderer or Renderer(config)
        self.issue = issue
        self.sender = sender_for(config.newsletter.name, config.newsletter.sender, config.newsletter.reply_to)
        self.signer = dkim_signer(config.smtp, self.sender.domain, config.root)
        self.send_when_no_match = config.newsletter.send_when_no_match
        self.by_key = {group_key(g, self.renderer.areas): g for g in all_groups(self.renderer.areas)}
        self._prepared: dict[str, PreparedGroup | None] = {}
        self._lock = threading.Lock()
        self._keys: dict[str, str | None] = {}  # enqueue asks once per subscriber, with a handful of values

    def key_for(self, areas_field: str) -> str | None:
        """The group of a subscriber (areas stored ';'-joined), or None when it meets no paper."""
        if areas_field not in self._keys:
            self._keys[areas_field] = self._key_for(areas_field)
        return self._keys[areas_field]

    def _key_for(self, areas_field: str) -> str | None:
        areas = normalize_areas([a for a in areas_field.split(";") if a], self.renderer.areas)
        if not split_papers(self.issue, areas)[0] and not self.send_when_no_match:
            return None  # decided without rendering: enqueueing renders nothing
        return group_key(areas, self.renderer.areas)

    def get(self, key: str) -> PreparedGroup | None:
        with self._lock:
            if key not in self._prepared:
                group = self.renderer.render(self.issue, self.by_key[key])
                self._prepared[key] = prepare(group, self.sender) if group else None
            return self._prepared[key]


def slots_for(links: Links, subscriber_id: int | None, name: str, email: str) -> dict[str, str]:
    """A subscriber's slot values; the name can never carry a control character."""
    sid = subscriber_id or 0
    return {
        "name": header_safe(name) or "there",
        "email": email,
        "unsubscribe_url": links.url(UNSUBSCRIBE, sid),
        "preferences_url": links.url(PREFERENCES, sid),
    }


def build_message(groups: Groups, links: Links, row: Row, domain: str, mailto: str) -> tuple[bytes, str]:
    """The subscriber's message, ready for DATA, and its Message-ID (kept on the outbox row)."""
    prepared = groups.get(row.group_key)
    assert prepared is not None, row.group_key
    mid = message_id(domain)
    data = _assemble(prepared, links, row, mailto, mid)
    return (groups.signer.sign(data) if groups.signer else data), mid


def _assemble(prepared: PreparedGroup, links: Links, row: Row, mailto: str, mid: str) -> bytes:
    slots = slots_for(links, row.subscriber_id, row.name, row.email)
    env = Envelope(row.email, row.name, mid, slots["unsubscribe_url"], mailto)
    return prepared.assemble(env, slots, {k: html.escape(v) for k, v in slots.items()})


@dataclass
class SendState:
    """What the threads of one send share."""

    stop: threading.Event = field(default_factory=threading.Event)
    fault: str | None = None
    consecutive_errors: int = 0
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, ok: bool, limit: int) -> None:
        with self.lock:
            self.done += 1
            self.consecutive_errors = 0 if ok else self.consecutive_errors + 1
            if self.consecutive_errors >= limit and not self.fault:
                self.pause(f"{limit} messages in a row were not accepted; last answers suggest the relay is in trouble")

    def pause(self, reason: str) -> None:
        self.fault = self.fault or reason
        self.stop.set()


class Delivery:
    """One send of one issue by this process."""

    def __init__(self, config: Config, engine: sa.Engine, issue: Issue, links: Links,
                 on_progress: Callable[[int], None] | None = None, groups: Groups | None = None,
                 stop: threading.Event | None = None) -> None:
        self.config, self.engine, self.issue, self.links = config, engine, issue, links
        self.groups = groups or Groups(config, issue)
        self.state = SendState(stop=stop or threading.Event())
        self.limit = RateLimit(config.smtp.rate_per_second, config.smtp.rate_per_hour)
        self.lease = timedelta(seconds=max(60.0, config.smtp.timeout * 4))
        self.on_progress = on_progress or (lambda n: None)
        self.mailto = unsubscribe_mailto(config)
        self.envelope_from = envelope_sender(config, self.groups.sender)
        sqlite = engine.dialect.name == "sqlite"
        self._sqlite_turn: contextlib.AbstractContextManager[object] = (
            threading.Lock() if sqlite else contextlib.nullcontext())

    def run(self, iid: int, wait: bool = True) -> None:
        """Deliver every due row; with ``wait``, keep going until deferred rows are final too."""
        while not self.state.stop.is_set():
            before = self.state.done
            threads = [threading.Thread(target=self._worker, args=(iid, n), daemon=True)
                       for n in range(self.config.smtp.connections)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            if self.state.stop.is_set() or not wait:
                break
            with self.engine.connect() as conn:
                due = outbox.next_due(conn, iid)
            if due is None:
                break
            # a round that moved nothing (hourly budget spent, rows held by other workers) must not spin
            floor = IDLE_SECONDS if self.state.done == before else 0.0
            self.state.stop.wait(max(floor, (due - utcnow()).total_seconds()))

    def _worker(self, iid: int, n: int) -> None:
        """One SMTP connection's loop: claim a batch, then per row begin, deliver, record.

        One transaction per message: the row's ``sending`` mark carries the previous row's result
        with it, so a message costs one commit instead of two and a process that dies still leaves
        at most one row per connection whose fate is unknown (the one in flight, or the one just
        sent whose result was not yet written). The database connection is held for the whole run.
        """
        worker = outbox.worker_name(str(n))
        smtp = Connection(self.config.smtp)
        done: list[tuple[Row, Result]] = []  # delivered, its result not written yet (at most one)
        with self.engine.connect() as conn:
            try:
                while not self.state.stop.is_set():
                    with self._write(conn, done):
                        size = CLAIM_BATCH
                        if self.config.smtp.rate_per_hour:
                            size = min(size, outbox.hourly_budget(conn, self.config.smtp.rate_per_hour, utcnow()))
                        rows = outbox.claim(conn, iid, worker, size, self.lease, utcnow()) if size else []
                    if not rows:
                        return
                    for row in rows:
                        if self.state.stop.is_set():
                            break
                        self._one(conn, worker, smtp, row, done)
            except SendFault as exc:
                self.state.pause(str(exc))
            finally:
                smtp.close()
                with self._write(conn, done):
                    outbox.release(conn, iid, worker)

    @contextlib.contextmanager
    def _write(self, conn: sa.Connection, done: list[tuple[Row, Result]]) -> Iterator[None]:
        """A write transaction that first records the result still pending on this connection.

        On SQLite the process's threads take turns through a lock: waiting on it costs microseconds,
        where SQLite's own busy handler sleeps whole milliseconds between retries.
        """
        with self._sqlite_turn, conn.begin():
            while done:
                row, result = done.pop()
                outbox.record(conn, row, result, self.config.smtp.max_attempts, self.config.smtp.retry_seconds,
                              utcnow())
            yield

    def _one(self, conn: sa.Connection, worker: str, smtp: Connection, row: Row,
             done: list[tuple[Row, Result]]) -> None:
        data, mid = build_message(self.groups, self.links, row, self.groups.sender.domain, self.mailto)
        self.limit.wait(self.state.stop)
        with self._write(conn, done):
            began = outbox.begin(conn, row.id, worker, self.lease, utcnow(), mid)
        if not began:
            return
        try:
            result = smtp.deliver(self.envelope_from, row.email, data, smtputf8=not row.email.isascii())
        except SendFault:
            with self._write(conn, done):
                outbox.requeue(conn, row.id)
            raise
        done.append((row, result))
        self.state.count(result.outcome is Outcome.SENT, self.config.smtp.pause_after_errors)
        self.on_progress(1)


def unsubscribe_mailto(config: Config) -> str:
    """The mailto: half of List-Unsubscribe: the From address, subject 'unsubscribe'."""
    addr = config.newsletter.sender.rpartition("<")[2].rstrip(">").strip()
    return f"mailto:{addr}?subject=unsubscribe"


@dataclass(frozen=True)
class Plan:
    """What ``send --dry-run`` prints: how many get which group, how many are skipped."""

    groups: dict[str, int]
    skipped: int


def plan(engine: sa.Engine, groups: Groups) -> Plan:
    counts: dict[str, int] = {}
    skipped = 0
    with engine.connect() as conn:
        for batch in outbox.active_subscribers(conn):
            for sub in batch:
                key = groups.key_for(sub.areas)
                if key is None:
                    skipped += 1
                else:
                    counts[key] = counts.get(key, 0) + 1
    return Plan(dict(sorted(counts.items())), skipped)


def start_issue(engine: sa.Engine, groups: Groups, now: datetime) -> tuple[int, outbox.Counts | None]:
    """The issue's outbox: made now (issue row and all rows in one transaction) or found from before."""
    with engine.begin() as conn:
        iid = outbox.issue_id(conn, groups.issue.slug)
        if iid is not None:
            return iid, None
        iid = outbox.create_issue(conn, groups.issue.slug, groups.issue.title, now)
        return iid, outbox.enqueue(conn, iid, groups.key_for, now)


# --- one send, start to end ----------------------------------------------------------------------


def links_for(config: Config, engine: sa.Engine) -> Links:
    """Signed links keyed by ``[newsletter] secret_key``, else by a random key kept in the database."""
    secret = config.newsletter.secret_key.get_secret_value()
    if not secret:
        with engine.begin() as conn:
            secret = store.meta_secret(conn, "link_key")
    return Links(secret, config.newsletter.base_url.rstrip("/"))


@dataclass(frozen=True)
class Started:
    """What ``prepare_send`` found or made before any message goes out."""

    iid: int
    created: outbox.Counts | None  # None: the outbox existed already (a resumed send)
    recovered_unknown: int         # rows left mid-transfer by a process that died
    requeued_unknown: int          # unknown rows put back on --resend-unknown
    due: int                       # rows to deliver now


def prepare_send(engine: sa.Engine, groups: Groups, resend_unknown: bool = False) -> Started:
    """Make (or find) the issue's outbox, turn dead processes' ``sending`` rows into ``unknown``."""
    now = utcnow()
    iid, created = start_issue(engine, groups, now)
    with engine.begin() as conn:
        recovered = outbox.recover(conn, iid, now, outbox.local_alive)
        requeued = outbox.resend_unknown(conn, iid) if resend_unknown else 0
        outbox.skip_gone(conn, iid, now)
        due = outbox.due_count(conn, iid)
        if due:
            outbox.set_issue_state(conn, iid, "sending")
    return Started(iid, created, recovered, requeued, due)


def finish_send(engine: sa.Engine, iid: int, fault: str | None) -> str:
    """The issue's state after a run: paused (with the reason), sent, or still sending."""
    with engine.begin() as conn:
        if fault:
            outbox.set_issue_state(conn, iid, "paused", fault)
            return "paused"
        if outbox.next_due(conn, iid) is None:
            outbox.set_issue_state(conn, iid, "sent")
            return "sent"
    return "sending"


def send_test(config: Config, engine: sa.Engine | None, issue: Issue, to: str, areas: tuple[str, ...],
              name: str = "") -> Result:
    """One copy of a group to an editor's address, subject marked [Test]; the outbox is not touched."""
    renderer = Renderer(config)
    group = renderer.render(issue, areas)
    if group is None:
        raise SendFault(f"no paper of {issue.slug} meets the areas {', '.join(areas)}: nothing to test")
    group = dataclasses.replace(group, subject=f"[Test] {group.subject}")
    sender = sender_for(config.newsletter.name, config.newsletter.sender, config.newsletter.reply_to)
    links = links_for(config, engine) if engine is not None else Links("test-only", config.newsletter.base_url)
    row = Row(0, None, to, name, group.key, 0)
    data = _assemble(prepare(group, sender), links, row, unsubscribe_mailto(config), message_id(sender.domain))
    signer = dkim_signer(config.smtp, sender.domain, config.root)
    data = signer.sign(data) if signer else data
    smtp = Connection(config.smtp)
    try:
        return smtp.deliver(envelope_sender(config, sender), to, data, smtputf8=not to.isascii())
    finally:
        smtp.close()


def envelope_sender(config: Config, sender: Sender) -> str:
    return config.smtp.envelope_from or sender.from_header.rpartition("<")[2].rstrip(">")


def dkim_signer(cfg: SmtpSection, sender_domain: str, root: Path) -> DkimSigner | None:
    """The DKIM signer the config asks for (``[smtp] dkim_*``), or None; a bad key file is one line."""
    if not cfg.dkim_key_file:
        return None
    path = root / cfg.dkim_key_file
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"smtp.dkim_key_file: cannot read {path}: {exc.strerror}") from None
    if b"PRIVATE KEY-----" not in key:
        raise ConfigError(f"smtp.dkim_key_file: {path} is not a PEM private key")
    domain = cfg.dkim_domain or sender_domain
    return DkimSigner(header_safe(cfg.dkim_selector).encode("ascii"), header_safe(domain).encode("idna"), key)


def send_issue(config: Config, engine: sa.Engine, groups: Groups, *, resend_unknown: bool = False, wait: bool = True,
               stop: threading.Event | None = None, on_start: Callable[[Started], None] | None = None,
               progress: Callable[[Started], contextlib.AbstractContextManager[Callable[[int], None]]] | None = None
               ) -> outbox.Report:
    """One whole send or resume of an issue, as ``newsletter send`` and the weekly job run it.

    ``stop`` ends it early and cleanly (rows not begun stay queued, so a later run resumes);
    ``on_start`` hears what was found or made, ``progress`` wraps the delivery with a progress bar.
    """
    started = prepare_send(engine, groups, resend_unknown)
    if on_start:
        on_start(started)
    links = links_for(config, engine)
    with (progress(started) if progress else contextlib.nullcontext(lambda _n: None)) as tick:
        delivery = Delivery(config, engine, groups.issue, links, tick, groups=groups, stop=stop)
        delivery.run(started.iid, wait)
    finish_send(engine, started.iid, delivery.state.fault)
    with engine.connect() as conn:
        report = outbox.report(conn, groups.issue.slug)
    assert report is not None
    return report
