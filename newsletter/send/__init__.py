"""The send pipeline: every message the engine sends, and every send of an issue.

    campaign   plan → enqueue → deliver → finish, one orchestration for every mode
    fanout     a send's helper processes, one a core, each a DELIVER pass over the same outbox
    pool       the sending threads: claim, begin, deliver, record; nothing one row does stalls them
    worker     ``newsletter worker``: DELIVER passes over every issue being sent
    control    an operator's pause, resume, cancel (any process notices at its next claim), a test copy
    latejoin   the latest issue, once, for a reader who confirms within ``late_joiners_days`` of its send
    background sends the console and the API start: a thread of ``newsletter serve``, or the workers'
    status     where every issue stands (readiness, counts, rates, the next send) for the console and the API
    outbox     the narrow store of rows (named queries); ``policy`` decides what an outcome means
    report     counts, rate and failures of an issue's send; insights (by receiving domain, sends
               per minute, counted in the database) and report_page (``report --html``)
    mailer     the one way out: compose → sign → transport
    compose    the message bytes (issue copies from prepared parts, the confirmation mail)
    groups     which group each subscriber gets, each rendered once
    sign       DKIM
    transport  the seam (``Outgoing``, ``Result``, ``Transport``) and the directory transport
    smtp       the SMTP transport: the only module that knows the wire

Imports run one way: campaign/worker → fanout, pool → mailer → compose/sign/transport.
"""

from .campaign import Campaign, Events, Mode, Options, Plan, Run, Started
from .mailer import Mailer, Recipient
from .report import Report, report
from .transport import Outcome, Outgoing, Result
from .worker import Worker

__all__ = ["Campaign", "Events", "Mailer", "Mode", "Options", "Outcome", "Outgoing", "Plan", "Recipient", "Report",
           "Result", "Run", "Started", "Worker", "report"]
