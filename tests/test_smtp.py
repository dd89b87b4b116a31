"""The SMTP transport against a real aiosmtpd server: answers, drops, stalls, STARTTLS + AUTH, SMTPUTF8."""

from __future__ import annotations

import functools
from collections import deque

import pytest

from newsletter.config import SmtpSection
from newsletter.errors import SendFault
from newsletter.send.smtp import SmtpTransport, classify
from newsletter.send.transport import Outcome, Outgoing

from .conftest import tls_relay
from .smtpd import smtp_server

MSG = b"Subject: t\r\n\r\nhello\r\n.dot line\r\n"


class Connection(SmtpTransport):
    """The transport, called with (sender, recipient, data) as these tests were first written."""

    def deliver(self, sender, rcpt, data, ascii_rcpt=None):  # type: ignore[override]
        fallback = Outgoing(sender, ascii_rcpt, data, "<t@example.org>") if ascii_rcpt else None
        return super().deliver(Outgoing(sender, rcpt, data, "<t@example.org>", fallback))


def cfg(port: int, **kw: object) -> SmtpSection:
    return SmtpSection(host="127.0.0.1", port=port, timeout=kw.pop("timeout", 5), **kw)


@pytest.fixture(params=[True, False], ids=["pipelining", "one-at-a-time"])
def server(request):
    """The test server, once advertising PIPELINING (as real relays do) and once not."""
    return functools.partial(smtp_server, pipelining=request.param)


def test_classify_codes():
    """2xx sent, 4xx deferred, 5xx failed, and a 5xx 'user unknown' at RCPT is a hard bounce."""
    assert classify(250, "ok", False) is Outcome.SENT
    assert classify(451, "later", True) is Outcome.DEFERRED
    assert classify(550, "5.1.1 User unknown", True) is Outcome.BOUNCED
    assert classify(552, "5.2.2 Mailbox full", True) is Outcome.FAILED
    assert classify(550, "5.1.1 User unknown", False) is Outcome.FAILED


def test_reused_connection_delivers_dot_stuffed_body(server):
    """Several messages go over one connection; a line starting with '.' is stuffed on the wire and arrives intact."""
    with server() as (handler, port):
        conn = Connection(cfg(port))
        results = [conn.deliver("from@example.org", f"r{i}@example.org", MSG) for i in range(3)]
        conn.close()
    assert [r.outcome for r in results] == [Outcome.SENT] * 3 and results[0].code == 250
    assert handler.messages[0][1].endswith(b"hello\r\n.dot line\r\n")


def test_4xx_then_accept(server):
    """A 451 (and a 421 at RCPT) is deferred; the next try over the same connection is sent."""
    with server() as (handler, port):
        handler.data = deque(["451 4.3.0 try later"])
        handler.rcpt["b@example.org"] = deque(["450 4.2.1 busy"])
        conn = Connection(cfg(port))
        first = conn.deliver("f@example.org", "a@example.org", MSG)
        second = conn.deliver("f@example.org", "a@example.org", MSG)
        third = conn.deliver("f@example.org", "b@example.org", MSG)
        fourth = conn.deliver("f@example.org", "b@example.org", MSG)
        conn.close()
    assert (first.outcome, first.code) == (Outcome.DEFERRED, 451)
    assert second.outcome is Outcome.SENT and third.outcome is Outcome.DEFERRED and fourth.outcome is Outcome.SENT
    assert handler.received == {"a@example.org": 1, "b@example.org": 1}


def test_5xx_for_one_recipient_is_a_bounce_and_the_line_stays_usable(server):
    """550 user unknown fails that recipient as a hard bounce; the next one goes through."""
    with server() as (handler, port):
        handler.rcpt["gone@example.org"] = deque(["550 5.1.1 <gone@example.org>: user unknown"])
        conn = Connection(cfg(port))
        gone = conn.deliver("f@example.org", "gone@example.org", MSG)
        ok = conn.deliver("f@example.org", "ok@example.org", MSG)
        conn.close()
    assert gone.outcome is Outcome.BOUNCED and gone.code == 550 and "user unknown" in gone.answer
    assert ok.outcome is Outcome.SENT


@pytest.mark.parametrize("where", ["rcpt", "body"])
def test_dropped_line_before_the_final_dot_is_deferred_and_reconnects(server, where):
    """A line closed before the final dot (at RCPT, or while the body streams) defers the row: the relay cannot
    have the message, so a retry is safe; the next message reconnects."""
    big = MSG + (b"y" * 998 + b"\r\n") * 8000  # 8 MB: more than a socket's send buffer, so sending it fails
    with server() as (handler, port):
        if where == "rcpt":
            handler.rcpt["a@example.org"] = deque(["drop"])
        else:
            handler.body.append("drop")
        conn = Connection(cfg(port))
        dropped = conn.deliver("f@example.org", "a@example.org", big)
        again = conn.deliver("f@example.org", "a@example.org", MSG)
        conn.close()
    assert dropped.outcome is Outcome.DEFERRED and dropped.answer.startswith("connection")
    assert again.outcome is Outcome.SENT and handler.received["a@example.org"] == 1


def test_stall_past_timeout_before_the_final_dot_is_deferred(server):
    """A server that says nothing past the timeout (here to RCPT) defers the row instead of hanging."""
    with server() as (handler, port):
        handler.rcpt["a@example.org"] = deque(["stall"])
        handler.stall_seconds = 3
        conn = Connection(cfg(port, timeout=1))
        stalled = conn.deliver("f@example.org", "a@example.org", MSG)
        conn.drop()
    assert stalled.outcome is Outcome.DEFERRED and "timed out" in stalled.answer.lower()
    assert handler.received["a@example.org"] == 0


def test_after_the_final_dot_silence_or_garbage_is_unknown_and_the_next_message_gets_a_fresh_line(server):
    """A dropped line, a time-out or a non-SMTP answer after the final dot is unknown (the whole answer kept), the
    line is replaced; a multi-line 2xx is sent and a 4xx is still deferred: the relay said it has nothing."""
    with server() as (handler, port):
        handler.data = deque(["keep drop", "stall", "hello? 250 ok", "keep 250-queued\r\n250 as 42", "451 4.3.0 later"])
        handler.stall_seconds = 2
        conn = Connection(cfg(port, timeout=0.5))
        results = [conn.deliver("f@example.org", f"r{n}@example.org", MSG) for n in range(6)]
        conn.close()
    assert [r.outcome for r in results] == [Outcome.UNKNOWN] * 3 + [Outcome.SENT, Outcome.DEFERRED, Outcome.SENT]
    assert "closed" in results[0].answer and "timed out" in results[1].answer
    assert results[2].answer == "not an SMTP answer after the final dot: hello? 250 ok" and results[2].code is None
    assert (results[3].code, results[3].answer) == (250, "queued as 42")
    assert handler.received == {"r0@example.org": 1, "r3@example.org": 1, "r5@example.org": 1}


def test_auth_over_starttls_with_self_signed_certificate(tmp_path):
    """STARTTLS against a certificate from our own CA, then AUTH, then delivery."""
    kwargs, ca_file = tls_relay(tmp_path, lambda u, p: (u, p) == (b"editor", b"s3cret"))
    with smtp_server(**kwargs) as (handler, port):
        conn = Connection(cfg(port, security="starttls", username="editor", password="s3cret", ca_file=str(ca_file)))
        result = conn.deliver("f@example.org", "a@example.org", MSG)
        conn.close()
    assert result.outcome is Outcome.SENT and handler.received["a@example.org"] == 1


def test_refused_login_is_a_fault_of_the_whole_send(tmp_path):
    """A wrong password raises SendFault with a one-line reason that does not contain the password."""
    kwargs, ca_file = tls_relay(tmp_path, lambda u, p: False)
    with smtp_server(**kwargs) as (handler, port):
        conn = Connection(cfg(port, security="starttls", username="editor", password="wrong-pw", ca_file=str(ca_file)))
        with pytest.raises(SendFault, match="refused the login: 535") as info:
            conn.deliver("f@example.org", "a@example.org", MSG)
    assert "wrong-pw" not in str(info.value) and "\n" not in str(info.value)


def test_untrusted_certificate_is_refused(tmp_path):
    """Without the CA file the self-signed certificate is not trusted: a one-line fault, nothing sent."""
    kwargs, _ = tls_relay(tmp_path, lambda u, p: True)
    with smtp_server(**kwargs) as (handler, port):
        conn = Connection(cfg(port, security="starttls", username="u", password="p"))
        with pytest.raises(SendFault, match="TLS failed"):
            conn.deliver("f@example.org", "a@example.org", MSG)
    assert not handler.messages


def test_refused_sender_is_a_fault(server):
    """A 5xx to MAIL FROM pauses the whole send rather than failing every row."""
    with server() as (handler, port):
        async def refuse(server, session, envelope, address, mail_options):
            return "553 5.7.1 sender not allowed"

        handler.handle_MAIL = refuse
        conn = Connection(cfg(port))
        with pytest.raises(SendFault, match="refused the sender: 553"):
            conn.deliver("f@example.org", "a@example.org", MSG)
        conn.close()


def test_commands_are_pipelined_only_where_the_relay_offers_it(server):
    """With PIPELINING, RCPT and DATA travel with MAIL in one write; without it, each waits for its reply."""
    with server() as (handler, port):
        conn = Connection(cfg(port))
        results = [conn.deliver("Editor <f@example.org>", f"r{i}@example.org", MSG) for i in range(3)]
        conn.close()
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert handler.pipelined == [handler.pipelining] * 3


def test_refused_mail_or_rcpt_in_a_pipeline_leaves_the_line_usable(server):
    """A 4xx to MAIL defers, a 550 to RCPT bounces (the pipelined DATA is refused too); the next message goes."""
    with server() as (handler, port):
        answers = deque(["451 4.3.2 slow down"])

        async def mail(srv, session, envelope, address, mail_options):
            if answers:
                return answers.popleft()
            envelope.mail_from = address
            return "250 OK"

        handler.handle_MAIL = mail
        handler.rcpt["gone@example.org"] = deque(["550 5.1.1 user unknown"])
        conn = Connection(cfg(port))
        deferred = conn.deliver("f@example.org", "a@example.org", MSG)
        bounced = conn.deliver("f@example.org", "gone@example.org", MSG)
        sent = conn.deliver("f@example.org", "a@example.org", MSG)
        conn.close()
    assert (deferred.outcome, deferred.code) == (Outcome.DEFERRED, 451)
    assert (bounced.outcome, bounced.code) == (Outcome.BOUNCED, 550)
    assert sent.outcome is Outcome.SENT and handler.received == {"a@example.org": 1}


def test_an_address_that_could_split_a_command_is_never_sent():
    """A recipient carrying CR/LF or angle brackets fails its row without reaching the relay."""
    with smtp_server() as (handler, port):
        conn = Connection(cfg(port))
        bad = conn.deliver("f@example.org", "a@example.org>\r\nRCPT TO:<b@example.org", MSG)
        conn.close()
    assert bad.outcome is Outcome.FAILED and bad.code is None and not handler.messages


@pytest.mark.parametrize("utf8", [True, False], ids=["relay-with-SMTPUTF8", "relay-without"])
def test_internationalized_address_goes_only_to_a_relay_that_takes_it(server, utf8):
    """A non-ASCII address is sent with SMTPUTF8 where offered; elsewhere its row fails, and the line stays usable."""
    with server(enable_SMTPUTF8=utf8) as (handler, port):
        conn = Connection(cfg(port))
        intl = conn.deliver("f@example.org", "zoë@example.org", MSG)
        plain = conn.deliver("f@example.org", "a@example.org", MSG)
        conn.close()
    assert plain.outcome is Outcome.SENT
    if utf8:
        assert intl.outcome is Outcome.SENT and handler.received["zoë@example.org"] == 1
    else:
        assert intl.outcome is Outcome.FAILED and "SMTPUTF8" in intl.answer
        assert handler.received == {"a@example.org": 1}


@pytest.mark.parametrize("utf8", [True, False], ids=["relay-with-SMTPUTF8", "relay-without"])
def test_non_ascii_domain_goes_as_utf8_or_as_idna(server, utf8):
    """An ASCII local part at a non-ASCII domain is delivered either way: as UTF-8 with SMTPUTF8, else as IDNA."""
    with server(enable_SMTPUTF8=utf8) as (handler, port):
        conn = Connection(cfg(port))
        result = conn.deliver("f@example.org", "nutzer@bücher.example", MSG, ascii_rcpt="nutzer@xn--bcher-kva.example")
        conn.close()
    assert result.outcome is Outcome.SENT
    assert handler.received == {("nutzer@bücher.example" if utf8 else "nutzer@xn--bcher-kva.example"): 1}
