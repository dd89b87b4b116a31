"""The long tables of Sisimai's remote-host rules for Microsoft's Exchange Online, Google's mail servers and
Mimecast (lib/Sisimai/Rhost/ExchangeOnline.pm, GoogleApps.pm, Mimecast.pm, 4.25.15, BSD-2-Clause), copied one
entry a line: "reason|status|low|high|words", "reason|reply|status|words" and "reason|reply|words"."""

from __future__ import annotations

import re

from . import reasons


def _table(text: str) -> list[tuple[str, ...]]:
    return [tuple(line.strip().split("|")) for line in text.strip().split("\n")]


def _reply(f: reasons.Failure) -> str:
    return reasons.find_reply(f.diagnostic)


# Sisimai::Rhost::ExchangeOnline: reason|status (x.y. for a range)|low|high|words
EXCHANGE = _table("""
blocked|4.4.2|0|0|connection dropped
blocked|4.7.|850|899|access denied, please try again later
blocked|5.7.25|0|0|must have a reverse dns record
blocked|5.7.506|0|0|access denied, bad helo
blocked|5.7.507|0|0|access denied, rejected by recipient
blocked|5.7.510|0|0|does not accept email over ipv6
blocked|5.7.511|0|0|access denied, banned sender
blocked|5.7.513|0|0|using customer block list
blocked|5.7.|606|649|access denied, banned sending ip
blocked|4.7.|500|699|access denied, please try again later
blocked|5.5.4|0|0|invalid domain name
blocked|5.7.51|0|0|restrictdomainstoipaddresses or restrictdomainstocertificate
blocked|5.7.1|0|0|part of their network is on our block list (s3150)
blocked|4.7.26|0|0|must pass either spf or dkim validation, this message is not signed
blocked|4.7.323|0|0|tlsa-invalid: The domain failed dane validation
blocked|5.7.323|0|0|tlsa-invalid: The domain failed dane validation
blocked|4.7.324|0|0|dnssec-invalid: destination domain returned invalid dnssec records
blocked|5.7.324|0|0|dnssec-invalid: destination domain returned invalid dnssec records
blocked|5.7.23|0|0|the message was rejected because of sender policy framework violation
blocked|5.7.322|0|0|certificate-expired: destination mail server's certificate is expired
blocked|5.7.509|0|0|does not pass dmarc verification
blocked|4.7.650|0|0|has been temporarily rate limited due to ip reputation
contenterror|5.3.0|0|0|too many related errors
contenterror|5.6.11|0|0|invalid characters
contenterror|5.4.11|0|0|agent generated message depth exceeded
contenterror|5.5.6|0|0|invalid message content
exceedlimit|5.2.3|0|0|resolver.rst.recipsizelimit; message too large for this recipient
expired|4.4.1|0|0|connection timed out
expired|4.4.7|0|0|message delayed
expired|4.4.7|0|0|queue expired; message expired
expired|4.4.7|0|0|message expired
expired|5.4.300|0|0|message expired
mailboxfull|5.2.2|0|0|mailbox full
mesgtoobig|5.3.4|0|0|message size exceeds fixed maximum message size
mesgtoobig|5.3.4|0|0|message too big for system
networkerror|5.4.4|0|0|smtpsend.dns.nonexistentdomain; nonexistent domain
networkerror|5.4.6|0|0|hop count exceeded - possible mail loop
networkerror|4.4.316|0|0|connection refused
networkerror|5.4.4|0|0|invalid arguments
networkerror|5.4.6|0|0|routing loop detected
networkerror|5.4.14|0|0|routing loop detected
norelaying|5.7.1|0|0|unable to relay
norelaying|5.7.1|0|0|client was not authenticated
norelaying|5.4.1|0|0|relay access denied
norelaying|5.7.64|0|0|tenantattribution; relay access denied
norelaying|5.4.310|0|0|does not exist
notaccept|4.3.2|0|0|system not accepting network messages
notaccept|5.3.2|0|0|storedrv.deliver: missing or bad storedriver mdb properties
policyviolation|5.0.350|0|0|x-dg-ref header is too long
policyviolation|5.0.350|0|0|requested action not taken: policy violation detected (as345)
policyviolation|5.7.|900|999|delivery not authorized, message refused
rejected|5.1.7|0|0|invalid address
rejected|5.1.7|0|0|unknown sender address
rejected|5.1.0|0|0|sender denied
rejected|5.1.8|0|0|access denied, bad outbound sender
rejected|5.7.1|0|0|delivery not authorized
rejected|5.7.12|0|0|sender was not authenticated by organization
rejected|5.7.124|0|0|sender not in allowed-senders list
rejected|5.7.133|0|0|sender not authenticated for group
rejected|5.7.134|0|0|sender was not authenticated for mailbox
rejected|5.7.13|0|0|sender was not authenticated for public folder
rejected|5.7.135|0|0|sender was not authenticated for public folder
rejected|5.7.136|0|0|sender was not authenticated
rejected|5.7.|501|503|access denied, spam abuse detected
rejected|5.7.512|0|0|access denied, message must be rfc 5322 section 3.6.2 compliant
rejected|5.7.750|0|0|service unavailable. client blocked from sending from unregistered domains
rejected|5.7.|501|503|access denied, banned sender
securityerror|5.7.3|0|0|cannot achieve exchange server authentication
securityerror|5.7.3|0|0|not authorized
securityerror|4.7.321|0|0|starttls-not-supported: destination mail server must support tls to receive mail
securityerror|5.7.321|0|0|starttls-not-supported: destination mail server must support tls to receive mail
securityerror|5.7.1|0|0|client was not authenticated
securityerror|5.7.57|0|0|client was not authenticated to send anonymous mail during mail from
spamdetected|5.2.1|0|0|content filter agent quarantined this message
suspend|5.7.504|0|0|recipient address rejected: access denied
suspend|5.7.505|0|0|access denied, banned recipient
suspend|5.2.1|0|0|mailbox cannot be accessed
syntaxerror|5.3.3|0|0|unrecognized command
syntaxerror|5.5.2|0|0|send hello first
systemerror|4.3.2|0|0|service not available
systemerror|4.3.2|0|0|service not active
systemerror|5.3.5|0|0|system incorrectly configured
systemerror|5.0.0|0|0|helo / ehlo requires domain address
systemerror|5.1.4|0|0|destination mailbox address ambiguous
systemerror|5.2.4|0|0|mailing list expansion problem
systemerror|5.2.14|0|0|misconfigured forwarding address
systemerror|4.4.3|0|0|temporary server error. please try again later attr18
systemerror|4.7.0|0|0|temporary server error. please try again later. prx4 nexthop:
systemerror|4.7.500|0|0|server busy. please try again later from
systemerror|4.7.700|0|0|pfa agent busy, please try again.
systemfull|4.3.1|0|0|insufficient system resources
toomanyconn|5.5.3|0|0|too many recipients
toomanyconn|4.5.3|0|0|too many recipients
toomanyconn|5.2.122|0|0|the recipient has exceeded their limit for
toomanyconn|4.3.2|0|0|storedrv.deliver; recipient thread limit exceeded
toomanyconn|5.2.2|0|0|submission quota exceeded
toomanyconn|5.2.121|0|0|recipient's per hour message receive limit from specific sender exceeded
toomanyconn|5.2.122|0|0|recipient's per hour message receive limit exceeded
toomanyconn|5.7.508|0|0|has exceeded permitted limits within
toomanyconn|5.7.|700|749|access denied, tenant has exceeded threshold
toomanyconn|5.7.|700|749|access denied, traffic not accepted from this ip
userunknown|5.1.1|0|0|resolver.adr.exrecipnotfound; not found
userunknown|5.1.1|0|0|user unknown
userunknown|5.1.3|0|0|storedrv.submit; invalid recipient address
userunknown|5.1.|4|5|recipient address reserved by rfc 2606
userunknown|5.1.6|0|0|recipient addresses in single label domains not accepted
userunknown|5.1.1|0|0|bad destination mailbox address
userunknown|5.1.10|0|0|recipient not found
userunknown|5.4.1|0|0|recipient address rejected: access denied
userunknown|5.5.0|0|0|requested action not taken: mailbox unavailable
userunknown|5.1.2|0|0|invalid x.400 address""")


def exchange_online(f: reasons.Failure) -> str:
    if f.reason:
        return f.reason
    if not f.diagnostic or not re.fullmatch(r"[245]\.\d\.\d+", f.status):
        return ""
    third, words = int(f.status.rsplit(".", 1)[1]), f.diagnostic.lower()

    def fits(row: tuple[str, ...]) -> bool:
        code, low, high = row[1], int(row[2]), int(row[3])
        if low == high:
            return f.status == code and row[4].lower() in words
        return code in f.status and low <= third <= high and row[4].lower() in words

    return next((row[0] for row in EXCHANGE if fits(row)), "")


# Sisimai::Rhost::GoogleApps: reason|reply|status|words
GOOGLE = _table("""
blocked|421|4.7.0|ip not in whitelist for rcpt domain, closing connection.
blocked|421|4.7.0|our system has detected an unusual rate of unsolicited mail originating from your ip address
blocked|421|4.7.0|try again later, closing connection.
blocked|501|5.5.4|helo/ehlo argument is invalid
blocked|550|5.7.1|our system has detected an unusual rate of unsolicited mail originating from your ip address
blocked|550|5.7.1|the ip you're using to send mail is not authorized to send email directly to our servers
blocked|550|5.7.25|the ip address sending this message does not have a ptr record setup
blocked|550|5.7.26|is not accepted due to domain's dmarc policy
blocked|550|5.7.1|fails to pass authentication checks
blocked|550|5.7.26|fails to pass authentication checks
blocked|550|5.7.26|this message fails to pass spf checks for an spf record with a hard fail
blocked|550|5.7.1|this message is likely suspicious due to the very low reputation of the sending ip address
contenterror|554|5.6.0|mail message is malformed. Not accepted
exceedlimit|552|5.2.3|your message exceeded Google's message size limits
expired|451|4.4.2|timeout - closing connection
mailboxfull|452|4.2.2|the email account that you tried to reach is over quota
mailboxfull|552|5.2.2|the email account that you tried to reach is over quota
mailboxfull|550|5.7.1|email quota exceeded
networkerror|554|5.6.0|message exceeded 50 hops, this may indicate a mail loop
norelaying|550|5.7.0|mail relay denied
policyviolation|550|5.7.1|messages with multiple addresses in from: header are not accepted
policyviolation|550|5.7.1|the user or domain that you are sending to (or from) has a policy that prohibited
policyviolation|552|5.7.0|our system detected an illegal attachment on your message
policyviolation|552|5.7.0|this message was blocked because its content presents a potential security issue
rejected|550|5.7.0|mail sending denied
rejected|550|5.7.1|unauthenticated email is not accepted from this domain
securityerror|421|4.7.0|tls required for rcpt domain, closing connection
securityerror|501|5.5.2|cannot decode response
securityerror|530|5.5.1|authentication required.
securityerror|535|5.7.1|application-specific password required
securityerror|535|5.7.1|please log in with your web browser and then try again
securityerror|535|5.7.1|username and password not accepted
securityerror|550|5.7.1|invalid credentials for relay
spamdetected|550|5.7.1|our system has detected that this message is likely unsolicited mail
suspend|550|5.2.1|the email account that you tried to reach is disabled
syntaxerror|451|4.5.0|smtp protocol violation, visit rfc 2821
syntaxerror|454|4.5.0|smtp protocol violation, no commands allowed to pipeline after starttls
syntaxerror|454|5.5.1|starttls may not be repeated
syntaxerror|502|5.5.1|too many unrecognized commands, goodbye
syntaxerror|502|5.5.1|unimplemented command
syntaxerror|502|5.5.1|unrecognized command
syntaxerror|503|5.5.1|ehlo/helo first
syntaxerror|503|5.5.1|mail first
syntaxerror|503|5.5.1|rcpt first
syntaxerror|503|5.7.0|no identity changes permitted
syntaxerror|504|5.7.4|unrecognized authentication type
syntaxerror|530|5.7.0|must issue a starttls command first
syntaxerror|535|5.5.4|optional argument not permitted for that auth mode
syntaxerror|554|5.7.0|too many unauthenticated commands
syntaxerror|555|5.5.2|syntax error
systemerror|421|4.3.0|temporary system problem
systemerror|421|4.7.0|temporary system problem
systemerror|421|4.4.5|server busy
systemerror|451|4.3.0|mail server temporarily rejected message
systemerror|454|4.7.0|cannot authenticate due to temporary system problem
systemerror|452|4.5.3|domain policy size per transaction exceeded
toomanyconn|451|4.3.0|multiple destination domains per transaction is unsupported
toomanyconn|452|4.5.3|your message has too many recipients
toomanyconn|450|4.2.1|is receiving mail too quickly
toomanyconn|450|4.2.1|is receiving mail at a rate that prevents additional messages from being delivered
toomanyconn|550|5.2.1|is receiving mail at a rate that prevents additional messages from being delivered
toomanyconn|450|4.2.1|peak smtp relay limit exceeded for customer
toomanyconn|550|5.4.5|daily smtp relay limit exceeded for user
toomanyconn|550|5.4.5|daily sending quota exceeded
toomanyconn|550|5.7.1|daily smtp relay limit exceeded for customer
userunknown|550|5.1.1|the email account that you tried to reach does not exist
userunknown|553|5.1.2|we weren't able to find the recipient domain""")


def google_apps(f: reasons.Failure) -> str:
    """As the module compares: the words, the reply code's last two digits and the status's last two parts."""
    reply = _reply(f)
    if f.reason:
        return f.reason
    if not reply or not f.diagnostic or not re.fullmatch(r"[245]\.\d\.\d+", f.status):
        return ""
    status, tail, words = f.status[2:], reply[1:3], f.diagnostic.lower()
    return next((row[0] for row in GOOGLE if row[3].lower() in words and row[1].find(tail) > 0
                 and row[2].find(status) > 1), "")


# Sisimai::Rhost::Mimecast: reason|reply|words
MIMECAST = _table("""
blocked|421|sender address blocked
blocked|451|recipient temporarily unavailable
blocked|451|ip temporarily blacklisted
blocked|451|internal resources are temporarily unavailable
blocked|550|local ct ip reputation - (reject)
blocked|550|spf sender invalid - envelope rejected
blocked|550|dkim sender invalid - envelope rejected
blocked|550|dmarc sender invalid - envelope rejected
mesgtoobig|554|maximum email size exceeded
networkerror|554|mail loop detected
norelaying|451|open relay not allowed
notaccept|451|account inbounds disabled
onhold|451|account outbounds disabled
onhold|451|hostname is not authorized
onhold|550|journal message past expiration
policyviolation|550|anti-spoofing policy - inbound not allowed
policyviolation|550|rejected by header-based anti-spoofing policy
policyviolation|550|message bounced due to content examination policy
policyviolation|554|host network not allowed
rejected|550|administrative prohibition envelope blocked
rejected|550|envelope blocked – user entry
rejected|550|envelope blocked – user domain entry
rejected|550|rejected by header-based manually blocked senders - block for manual block
rejected|550|rejected by header-based blocked senders - block policy for header from
rejected|550|envelope rejected - block policy for envelope from address
securityerror|535|incorrect authentication data
securityerror|550|submitter failed to disabled
securityerror|553|this route requires encryption (tls)
securityerror|553|this route requires tls version 1.2 or greater
securityerror|553|this route requires high-strength ciphers
securityerror|554|configuration is invalid for this certificate
systemerror|451|unable to process connection at this time
systemerror|451|message ended early
systemerror|451|unable to process command
systemerror|451|unable to process an email at this time
toomanyconn|451|account service is temporarily unavailable
toomanyconn|452|too many recipients
toomanyconn|550|exceeding outbound thread limit
userunknown|501|invalid address
userunknown|503|user unknown
userunknown|550|invalid recipient
virusdetected|554|email rejected due to security policies""")


def mimecast(f: reasons.Failure) -> str:
    reply, words = _reply(f), f.diagnostic.lower()
    if not f.diagnostic or not re.fullmatch(r"[245]\d\d", reply):
        return ""
    return next((row[0] for row in MIMECAST if row[1] == reply and row[2] in words), "")
