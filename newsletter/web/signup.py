"""Sign-up with double opt-in: the form, the confirmation mail, the confirm page.

The confirmation mail leaves through the send pipeline's one way out (``send.Mailer``): DKIM-signed
when a key is configured, like every other message, and carrying nothing the form supplied but the
address (``send.compose.confirmation``). Database and SMTP work is blocking, so the mail is sent in a
background task after the response: the sign-up page answers the same, and in the same time, whether
or not the address was known or a mail went out. Confirming, likewise after the answer, sends the
latest issue if its send is recent (``send.latejoin``: the rule lives in the library, not here).

Three limits, each against another flood: ``[web] subscribe_per_hour`` form posts per client (in
this process's memory), one mail per address per ``[web] confirm_every_minutes`` however many clients
ask, and ``[web] confirm_mails_per_hour`` mails in all, however many clients and addresses. The last
two are kept in the database (``guard.claim_confirmation``), so every ``serve`` process sees them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from .. import audience
from ..audience import Subscriber
from ..clock import SYSTEM, Clock
from ..errors import AudienceError, BadToken
from ..send import Mailer, Outcome, Recipient, latejoin
from ..send.compose import Confirmation
from . import guard
from .guard import CSRF_FIELD, SlidingWindow, client_ip
from .pages import Pages, strings

log = logging.getLogger("newsletter.web")
# At most one confirmation mail per address in this time, however many clients ask for one
# ([web] confirm_every_minutes sets it).
CONFIRM_EVERY = timedelta(minutes=60)
SENT_TEXT = ("If this address can receive our newsletter, we have sent it a link to confirm. "
             "Open it to start your subscription.")


class SignUp:
    """The sign-up and confirm endpoints; ``clock`` (monotonic seconds) drives the per-client limit and
    ``now`` the per-address and hourly ones, so a test can move time."""

    def __init__(self, pages: Pages, clock: Callable[[], float] | None = None, now: Clock = SYSTEM,
                 every: timedelta = CONFIRM_EVERY) -> None:
        web = pages.config.web
        self.pages, self.now, self.every, self.per_hour = pages, now, every, web.confirm_mails_per_hour
        self.mailer = Mailer(pages.config)
        self.limiter = SlidingWindow(web.subscribe_per_hour, 3600.0, clock or time.monotonic)
        self.max_age = int(web.confirm_hours * 3600)

    async def subscribe_form(self, request: Request) -> Response:
        return self.pages.page(request, "subscribe.html.j2", areas=self.pages.areas, values={"areas": ()})

    async def subscribe(self, request: Request) -> Response:
        p = self.pages
        if not self.limiter.allow(client_ip(request)):
            return p.message(request, 429, "Too many sign-ups", "Too many sign-ups from your address. Try again later.",
                             headers={"Retry-After": "3600"})
        form = await p.form(request)
        if not p.csrf.valid(request, form.get(CSRF_FIELD)):
            return p.forbidden(request)
        email, name, chosen = str(form.get("email", "")), str(form.get("name", "")), strings(form.getlist("areas"))
        try:
            audience.check_signup(email, name, chosen, p.areas)
        except AudienceError as exc:
            values = {"email": email, "name": name, "areas": chosen}
            return p.page(request, "subscribe.html.j2", 400, areas=p.areas, values=values, error=str(exc))
        text = SENT_TEXT
        if audience.needs_smtputf8(email.strip()):  # said from the address typed, never from the list
            text += (" Your address has non-ASCII characters before the @: it can be reached only where every mail "
                     "server on the way supports internationalized email (SMTPUTF8).")
        task = BackgroundTask(self.signup, email, name, chosen)
        return p.message(request, 200, "Check your inbox", text, background=task)

    def signup(self, email: str, name: str, chosen: Sequence[str]) -> None:
        """After the response: record the sign-up and send the confirmation link, if there is one to send."""
        sub = self.claim(email, name, chosen)
        if sub is None:
            return
        nl, web = self.pages.config.newsletter, self.pages.config.web
        what = Confirmation(nl.name, nl.identity, self.pages.links.confirm_url(sub.id), web.confirm_hours)
        try:
            result = self.mailer.send_one(self.mailer.confirmation(Recipient(sub.id, sub.email, ""), what))
        except Exception:  # after the response: nobody else would hear of it
            log.exception("confirmation email to subscriber %d could not be sent", sub.id)
            return
        if result.outcome is not Outcome.SENT:
            log.warning("confirmation email to subscriber %d not accepted: %s %s", sub.id, result.code, result.answer)

    def claim(self, email: str, name: str, chosen: Sequence[str]) -> Subscriber | None:
        """The subscriber to send a confirmation link to now, its claim recorded; None to send nothing."""
        try:
            with self.pages.engine.begin() as conn:
                now = self.now.now()
                sub = audience.request_signup(conn, email, name, chosen, self.pages.areas, now)
                if sub is None or guard.claim_confirmation(conn, sub.id, now, self.every, self.per_hour):
                    return sub
                self.log_refusal(conn, sub.id, now)
                return None
        except (AudienceError, sa.exc.IntegrityError):  # the same address signing up twice at once
            log.info("sign-up raced with another for the same address; nothing sent")
            return None

    def log_refusal(self, conn: Connection, sid: int, now: datetime) -> None:
        """Why no link went out: the hourly cap (a flood, worth a warning) or this address's own interval."""
        if guard.sent_last_hour(conn, now) >= self.per_hour:
            log.warning("confirmation mails of the last hour reached [web] confirm_mails_per_hour = %d: "
                        "none sent to subscriber %d", self.per_hour, sid)
        else:
            log.info("subscriber %d was sent a confirmation link less than %s ago; nothing sent", sid, self.every)

    async def confirmed(self, token: str) -> Subscriber | None:
        try:
            sid = self.pages.links.verify_confirm(token, self.max_age)
        except BadToken:
            return None
        return await self.pages.db(audience.get_id, sid)

    async def confirm_form(self, request: Request) -> Response:
        sub = await self.confirmed(request.path_params["token"])
        if sub is None:
            return self.pages.bad_link(request)
        return self.pages.page(request, "confirm.html.j2", active=sub.status == "active")

    async def confirm(self, request: Request) -> Response:
        form = await self.pages.form(request)
        sub = await self.confirmed(request.path_params["token"])
        if sub is None:
            return self.pages.bad_link(request)
        if not self.pages.csrf.valid(request, form.get(CSRF_FIELD)):
            return self.pages.forbidden(request)
        return await self.pages.activated(request, sub.id, "confirmed with the link in the confirmation email",
                                          then=self.late_joiner)

    def late_joiner(self, sid: int) -> None:
        """After the answer: the latest issue, if it went out within ``[newsletter] late_joiners_days`` and this
        reader has no copy of it yet (``send.latejoin``: through the send path, logged in the outbox)."""
        try:
            run = latejoin.send_latest(self.pages.config, self.pages.engine, sid, self.now)
        except Exception:  # after the response: nobody else would hear of it
            log.exception("the latest issue could not be sent to newly confirmed subscriber %d", sid)
            return
        if run is not None and run.started is not None:
            log.info("newly confirmed subscriber %d: the latest issue enqueued (%d delivered now)", sid, run.delivered)
