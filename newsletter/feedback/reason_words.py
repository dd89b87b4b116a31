"""Sisimai's words for each bounce reason and its table from status code to reason: data for ``reasons.py``.

Copied from Sisimai 4.25.15 (Debian's libsisimai-perl), BSD-2-Clause, Copyright (C) 2014-2021 azumakuniyuki:
``PHRASES`` are the ``$index`` lists of lib/Sisimai/Reason/<Name>.pm, matched as substrings of the lowercased
diagnostic ("rejected.isnot" is Rejected.pm's ``$isnot``: words that rule "rejected" out); ``PATTERNS`` are the
``$regex`` of Blocked, HostUnknown, MailerError, SecurityError, SpamDetected and UserUnknown, written without
Perl's /x layout (``[ ]`` is a space, ``[.]`` is ``\\.``; each was checked to match the same lines of Sisimai's
629-notice set-of-emails as the Perl original); ``STATUS`` is StandardCode of lib/Sisimai/SMTP/Status.pm.
Edit them only to follow a newer Sisimai, so the reasons stay Sisimai's.
"""

from __future__ import annotations

PHRASES: dict[str, tuple[str, ...]] = {
    "contenterror": (
        'header size exceeds maximum permitted', 'improper use of 8-bit data in message header',
        'message header size, or recipient list, exceeds policy limit',
        'message mime complexity exceeds the policy maximum', 'routing loop detected -- too many received: headers',
        'this message contain invalid mime headers', 'this message contain improperly-formatted binary content',
        'this message contain text that uses unnecessary base64 encoding',
    ),
    "exceedlimit": (
        'message header size exceeds limit', 'message too large',
    ),
    "expired": (
        'connection timed out', 'could not find a gateway for', 'delivery attempts will continue to be',
        'delivery time expired', 'failed to deliver to domain ', 'giving up on', 'have been failing for a long time',
        'has been delayed', 'it has not been collected after', 'message expired after sitting in queue for',
        'message expired, connection refulsed', 'message timed out',
        'retry time not reached for any host after a long failure period', 'server did not respond',
        'this message has been in the queue too long', 'unable to deliver message after multiple retries',
        'was not reachable within the allowed queue period', 'your message could not be delivered for more than',
    ),
    "filtered": (
        'because the recipient is only accepting mail from specific email addresses', 'bounced address',
        'due to extended inactivity new mail is not currently being accepted for this mailbox',
        'has restricted sms e-mail', 'is not accepting any mail', 'message rejected due to user rules',
        'not found recipient account', 'refused due to recipient preferences', 'resolver.rst.notauthorized',
        'this account is protected by', 'user not found', 'user reject',
        'we failed to deliver mail because the following address recipient id refuse to receive mail',
        'you have been blocked by the recipient',
    ),
    "hasmoved": (
        ' has been replaced by ',
    ),
    "hostunknown": (
        'domain does not exist', 'domain is not reachable', 'domain must exist', 'host or domain name not found',
        'host unknown', 'host unreachable', 'mail domain mentioned in email address is unknown',
        'name or service not known', 'no such domain', 'recipient address rejected: unknown domain name',
        'recipient domain must exist', 'the account or domain may not exist', 'unknown host', 'unroutable address',
        'unrouteable address',
    ),
    "mailboxfull": (
        'account disabled temporarly for exceeding receiving limits', 'account is exceeding their quota',
        'account is over quota', 'account is temporarily over quota', 'boite du destinataire pleine',
        'delivery failed: over quota', 'disc quota exceeded', 'does not have enough space',
        'exceeded storage allocation', 'exceeding its mailbox quota', 'full mailbox', 'is over disk quota',
        'is over quota temporarily', 'mail file size exceeds the maximum size allowed for mail delivery',
        'mail quota exceeded', 'mailbox exceeded the local limit', 'mailbox full',
        'mailbox has exceeded its disk space limit', 'mailbox is full', 'mailbox over quota',
        'mailbox quota usage exceeded', 'mailbox size limit exceeded', 'maildir over quota',
        'maildir delivery failed: userdisk quota ', 'maildir delivery failed: domaindisk quota ',
        'mailfolder is full', 'not enough storage space in', 'over the allowed quota', 'quota exceeded',
        'quota violation for', 'recipient reached disk quota',
        'recipient rejected: mailbox would exceed maximum allowed storage',
        'the recipient mailbox has exceeded its disk space limit', "the user's space has been used up",
        'the user you are trying to reach is over quota', 'too much mail data',
        'user has exceeded quota, bouncing mail', 'user has too many messages on the server', 'user is over quota',
        'user is over the quota', 'user over quota', 'user over quota. (#5.1.1)',
        'was automatically rejected: quota exceeded', 'would be over the allowed quota',
    ),
    "mesgtoobig": (
        'exceeded maximum inbound message size', 'line limit exceeded', 'max message size exceeded',
        'message file too big', 'message length exceeds administrative limit', 'message size exceeds fixed limit',
        'message size exceeds fixed maximum message size', 'message size exceeds maximum value', 'message too big',
        'message too large for this ', 'size limit', 'taille limite du message atteinte',
    ),
    "networkerror": (
        'could not connect and send the mail to', 'dns records for the destination computer could not be found',
        'hop count exceeded - possible mail loop', 'host is unreachable', 'host name lookup failure',
        'host not found, try again', 'mail forwarding loop for ', 'malformed name server reply',
        'malformed or unexpected name server reply', 'maximum forwarding loop count exceeded', 'message looping',
        'message probably in a routing loop', 'no route to host', 'too many hops', 'unable to resolve route ',
        'unrouteable mail domain',
    ),
    "norelaying": (
        'as a relay', 'insecure mail relay', 'is not permitted to relay through this server without authentication',
        'mail server requires authentication when attempting to send to a non-local e-mail address', 'not a gateway',
        'not allowed to relay through this machine', 'not an open relay, so get lost', 'not local host',
        'relay access denied', 'relay denied', 'relaying mail to ', 'relay not permitted', 'relaying denied',
        "that domain isn't in my list of allowed rcpthost", 'this system is not configured to relay mail',
        'unable to relay for', "we don't handle mail for",
    ),
    "notaccept": (
        'does not accept mail (nullmx)', 'host/domain does not accept mail', 'host does not accept mail',
        'name server: .: host not found', 'no mx record found for domain=', 'no route for current request',
        'smtp protocol returned a permanent error',
    ),
    "policyviolation": (
        'an illegal attachment on your message', 'because the recipient is not accepting mail with ',
        'by non-member to a members-only list', 'closed mailing list', 'denied by policy', 'dmarc policy',
        'email not accepted for policy reasons', 'email rejected due to security policies',
        'header are not accepted', 'header error', 'local policy violation',
        'message bounced due to organizational settings', 'message given low priority',
        'message not accepted for policy reasons', 'message rejected due to local policy',
        'messages with multiple addresses', 'rejected for policy reasons', 'protocol violation',
        'the email address used to send your message is not subscribed to this group',
        'the message was rejected by organization policy',
        'this message was blocked because its content presents a potential',
        'we do not accept messages containing images or other attachments',
        'you have exceeded the allowable number of posts without solving a captcha',
        'you have exceeded the the allowable number of posts without solving a captcha',
    ),
    "rejected.isnot": (
        '5.1.0 address rejected', 'recipient address rejected', 'sender ip address rejected',
    ),
    "rejected": (
        'access denied (in reply to mail from command)', 'access denied (sender blacklisted)', 'address rejected',
        'administrative prohibition', 'batv failed to verify', 'batv validation failure',
        'backscatter protection detected an invalid or expired email address',
        "because the sender isn't on the recipient's list of senders to accept mail from", 'bogus mail from',
        'connections not accepted from servers without a valid sender domain', 'denied [bouncedeny]',
        'denied by secumail valid-address-filter', 'delivery not authorized, message refused',
        'does not exist e2110', 'domain of sender address ', 'email address is on senderfilterconfig list',
        'emetteur invalide', 'empty envelope senders not allowed', 'envelope blocked – ',
        'error: no third-party dsns', 'from: domain is invalid. please provide a valid from:',
        'fully qualified email address required', 'invalid domain, see <url:', 'invalid sender',
        'is not a registered gateway user', 'mail from not owned by user',
        'message rejected: email address is not verified', 'mx records for ', 'null sender is not allowed',
        'recipient addresses rejected : access denied', 'recipient not accepted. (batv: no tag',
        'returned mail not accepted here', 'rfc 1035 violation: recursive cname records for',
        'rule imposed mailbox access for', 'sender address has been blacklisted', 'sender email address rejected',
        'sender is in my black list', 'sender is spammer', 'sender not pre-approved', 'sender rejected',
        'sender domain is empty', 'sender verify failed', 'syntax error: empty email address',
        'the message has been rejected by batv defense', 'this server does not accept mail from',
        'transaction failed unsigned dsn for', 'unroutable sender address',
        'you are not allowed to post to this mailing list',
        'you are sending to/from an address that has been blacklisted',
        'your access to submit messages to this e-mail system has been rejected',
    ),
    "suspend": (
        ' is currently suspended', ' temporary locked', 'boite du destinataire archivee',
        'email account that you tried to reach is disabled', 'has been suspended', 'invalid/inactive user',
        'is a deactivated mailbox', 'mailbox currently suspended', 'mailbox is frozen',
        'mailbox unavailable or access denied', 'recipient rejected: temporarily inactive',
        'recipient suspend the service', 'this account has been disabled or discontinued',
        'this mailbox is disabled', 'user suspended', 'vdelivermail: account is locked email bounced',
    ),
    "systemerror": (
        'aliasing/forwarding loop broken', "can't create user output file", 'could not load drd for domain',
        'internal error reading data', 'internal server error: operation now in progress', 'interrupted system call',
        'it encountered an error while being processed', 'it would create a mail loop', 'local configuration error',
        'local error in processing', 'loop was found in the mail exchanger', 'loops back to myself',
        'queue file write error', 'mail system configuration error', 'remote server is misconfigured',
        'server configuration error', 'service currently unavailable', 'system config error',
        'temporary local problem', 'timeout waiting for input', 'transaction failed',
    ),
    "systemfull": (
        'mail system full', 'requested mail action aborted: exceeded storage allocation',
    ),
    "toomanyconn": (
        'all available ips are at maximum connection limit', 'connection rate limit exceeded',
        'exceeds per-domain connection limit for', 'has exceeded the max emails per hour ',
        'throttling failure: daily message quota exceeded', 'throttling failure: maximum sending rate exceeded',
        'too many connections', 'too many connections from your host.', 'too many concurrent smtp connections',
        'too many errors from your ip', 'too many recipients', 'too many smtp sessions for this host',
        'trop de connexions, ', 'we have already made numerous attempts to deliver this message',
    ),
    "vacation": (
        'i am away on vacation', 'i am away until', 'i am out of the office', 'i will be traveling for work on',
    ),
    "virusdetected": (
        'it has a potentially executable attachment',
        'the message was rejected because it contains prohibited virus or spam content',
        'this form of attachment has been used by recent viruses or other malware', 'virus detected',
        'your message was infected with a virus',
    ),
}
PATTERNS: dict[str, str] = {
    "blocked": (
        r"(?> said: 550 blocked|\([^ ]+@[^ ]+:blocked\)|access denied\. ip name lookup failed|"
        r"access from ip address [^ ]+ blocked|"
        r"all mail servers must have a ptr record with a valid reverse dns entry|bad (:?dns ptr resource record|"
        r"sender ip address)|banned sending ip|blacklisted by|(?:blocked|refused) - see https?://|blocked using |"
        r"can't determine purported responsible address|cannot (?:find your hostname|resolve your address)|"
        r"client host (?:[^ ]+ blocked using|rejected: (?:abus detecte gu_eib_0[24]|cannot find your hostname|"
        r"may not be mail exchanger|was not authenticated))|confirm this mail server|connection (?:dropped|"
        r"refused by|reset by peer|was dropped by remote host)|"
        r"connections (?:not accepted from ip addresses on spamhaus xbl|"
        r"will not be accepted from [^ ]+, because the ip is in spamhaus's list)|currently sending spam see: |"
        r"domain (?:[^ ]+ mismatches client ip|does not exist:)|dns lookup failure: [^ ]+ try again later|"
        r"dnsbl:(?:attrbl|rbl \d+< .+ >_is_blocked)|dynamic/zombied/spam ips blocked|"
        r"email blocked by (?:[^ ]+\.barracudacentral\.org|spamhaus)|error: no valid recipients from |"
        r"esmtp not accepting connections|extreme bad ip profile|fix reverse dns for [^ ]+|go away|"
        r"helo command rejected:|host [^ ]+ refused to talk to me: \d+ blocked|host network not allowed|"
        r"hosts with dynamic ip|http://(?:spf\.pobox\.com/why\.html|www\.spamcop\.net/bl\.)|"
        r"invalid ip for sending mail of domain|ip \d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3} is blocked by earthlink|"
        r"ip/domain reputation problems|ips with missing ptr records|is (?:in a black list(?: at [^ ]+\.)?|"
        r"in an [^ ]+rbl on [^ ]+|not allowed to send (?:mail from|from <[^ ]+> per it's spf record))|"
        r"mail server at [^ ]+ is blocked|mail from \d+\.\d+\.\d+\.\d refused:|"
        r"message from [^ ]+ rejected based on blacklist|message was rejected for possible spam/virus content|"
        r"messages from [^ ]+ temporarily deferred due to user complaints|no (?:access from mail server|"
        r"ptr record found\.)|not currently accepting mail from your ip|part of their network is on our block list|"
        r"please (?:get a custom reverse dns name from your isp for your host|inspect your spf settings|"
        r"use the smtp server of your isp)|ptr record setup|"
        r"rejected because the sending mta or the sender has not passed validation|"
        r"rejected due to (?:a poor email reputation score|the sending mta's poor reputation)|rejecting open proxy|"
        r"reverse dns (?:failed|required|lookup for host [^ ]+ failed permanently)|sender ip (?:address rejected|"
        r"reverse lookup rejected)|server access (?:[^ ]+ forbidden by invalid rdns record of your mail server|"
        r"forbidden by your ip )|server ip [^ ]+ listed as abusive|"
        r"service not available, closing transmission channel|service permits \d+ unverifyable sending ips|"
        r"smtp error from remote mail server after initial connection:|"
        r"sorry, (?:that domain isn'?t in my list of allowed rcpthosts|"
        r"your remotehost looks suspiciously like spammer)|"
        r"spf (?:\(sender policy framework\) domain authentication fail|record|check: fail)|"
        r"spf: [^ ]+ is not allowed to send mail\. [a-z0-9]_401|"
        r"temporarily deferred due to unexpected volume or user complaints|the (?:email|domain|"
        r"ip) [^ ]+ is blacklisted|this system will not accept messages from servers/devices with no reverse dns|"
        r"to submit messages to this e-mail system has been rejected|too many (?:spams from your ip|"
        r"unwanted messages have been sent from the following ip address above)|unresolvable relay host name|"
        r"veuillez essayer plus tard\. service refused, please try later\. [0-9a-z_]+(?:103|510)|"
        r"was blocked by [^ ]+|we do not accept mail from (?:dynamic ips|"
        r"hosts with dynamic ip or generic dns ptr-records)|you are (?:not allowed to connect|sending spam)|"
        r"your (?:email address has been blacklisted|network is temporary blacklisted|"
        r"sender's ip address is listed at [^ ]+\.abuseat\.org|server requires confirmation))"
    ),
    "hostunknown": (
        r"553 [^ ]+ does not exist"
    ),
    "mailererror": (
        r"(?>\Aprocmail: |bin/(?:procmail|maildrop)|command (?:failed: |died with status \d+|output:)|exit \d+|"
        r"mailer error|pipe to \|/[^ ]+|x-unix; \d+)"
    ),
    "securityerror": (
        r"(?>account not subscribed to ses|authentication (?:credentialsinvalid|failure|failed; server [^ ]+ said:|"
        r"required|turned on in your email client)|authentification requise.+[0-9a-z_]+402|"
        r"codes? d'? *authentification invalide.+[0-9a-z_]+305|domain [^ ]+ is a dead domain|"
        r"executable files are not allowed in compressed files|insecure mail relay|"
        r"recipient address rejected: access denied|"
        r"sorry, you don'?t authenticate or the domain isn'?t in my list of allowed rcpthosts|"
        r"tls required but not supported|unauthenticated senders not allowed|"
        r"user [^ ]+ is not authorized to perform ses:sendrawemail on resource|"
        r"you are not authorized to send mail, authentication is required|verification failure)"
    ),
    "spamdetected": (
        r"(?>\"the mail server detected your message as spam and has prevented delivery\.\"|(?:\d\.\d\.\d|"
        r"\d{3}) spam\Z|554 5\.7\.0 reject, id=\d+|appears to be unsolicited|blacklisted url in message|"
        r"block for spam|blocked by (?:policy: no spam please|spamassassin)|"
        r"blocked for abuse\. see http://att\.net/blocks|bulk email|"
        r"considered unsolicited bulk e-mail \(spam\) by our mail filters|content filter rejection|"
        r"cyberoam anti spam engine has identified this email as a bulk email|denied due to spam list|"
        r"greylisted.?. please try again in|high probability of spam|https?://(?:www\.spamhaus\.org|dsbl\.org|"
        r"mail\.163\.com/help/help_spam_16\.htm)|listed in work\.drbl\.imedia\.ru|mail (?:appears to be unsolicited|"
        r"content denied|rejete\. mail rejected\. [0-9a-z_]+506)|may consider spam|"
        r"message (?:considered as spam or virus|contains spam or virus|content rejected|detected as spam|filtered|"
        r"filtered\. (?:please see the faqs section on spam|refer to the troubleshooting page at )|"
        r"is being rejected as it seems to be a spam|looks like spam|refused by (?:mailmarshal spamprofiler|"
        r"trustwave seg spamprofiler)|rejected (?:as spam|because of unacceptable content|"
        r"due to suspected spam content|for policy reasons))|our (?:email server thinks this email is spam|"
        r"filters rate at and above \d+ percent probability of being spam|system has detected that this message is)|"
        r"probable spam|reject bulk\.advertising|rejected(?:: spamassassin score | by [^ ]+ \(spam\)|"
        r" due to spam (?:url in )?(?:classification|content))|rejecting (?:banned|mail) content|"
        r"related to content with spam-like characteristics|rule imposed as [^ ]+ is blacklisted on|"
        r"sender domain listed at [^ ]+|sending address not accepted due to spam filter|spam (?:[^ ]+ exceeded|"
        r"blocked|check|content matched|detected|email|email not accepted|message rejected\.|not accepted|refused|"
        r"rejection|reporting address|score )|spambouncer identified spam|spamming not allowed|too much spam\.|"
        r"the email message was detected as spam|the message (?:has been rejected by spam filtering engine|"
        r"was rejected due to classification as bulk mail)|the content of this message looked like spam|"
        r"this (?:e-mail|mail) (?:cannot be forwarded because it was detected as spam|"
        r"is classified as spam and is rejected)|this message (?:appears to be spam|has been (?:identified as spam|"
        r"scored as spam with a probability)|scored [^ ]+ spam points|was classified as spam|"
        r"was rejected by recurrent pattern detection system)|transaction failed spam message not queued|"
        r"we dont accept spam|you're using a mass mailer|"
        r"your (?:email (?:appears similar to spam we have received before|breaches local uribl policy|"
        r"had spam-like |is (?:considered|probably) spam|was detected as spam)|"
        r"message (?:as spam and has prevented delivery|has been (?:temporarily blocked by our filter|"
        r"rejected because it appears to be spam)|has triggered a spam block|may contain the spam contents|"
        r"failed several antispam checks)))"
    ),
    "userunknown": (
        r"(?>#5\.1\.1 bad address|<[^ ]+> not found|<[^ ]+@[^ ]+>\.\.\. blocked by |550 address invalid|"
        r"5\.1\.0 address rejected\.|account [^ ]+ does not exist at the organization|"
        r"adresse d au moins un destinataire invalide\. invalid recipient\.[0-9a-z_]+41[68]|"
        r"address (?:does not exist|not present in directory|unknown)|archived recipient|bad[-_ \t]recipient|"
        r"can't accept user|does not exist\.|destination (?:addresses were unknown|server rejected recipients)|"
        r"email address (?:does not exist|could not be found)|invalid (?:address|mailbox:?|mailbox path|recipient)|"
        r"is not (?:a known user|a valid mailbox|an active address at this host)|mailbox (?:[^ ]+ does not exist|"
        r"[^ ]+@[^ ]+ unavailable|does not exist|invalid|is (?:inactive|unavailable)|not (?:present|found)|"
        r"unavailable)|nessun utente simile in questo indirizzo|no (?: [^ ]+ in name directory|"
        r"account by that name here|existe (?:dicha persona|ese usuario )|mail box available for this user|"
        r"mailbox (?:by that name is currently available|found)|matches to nameserver query|such (?:address here|"
        r"mailbox|person at this address|recipient|user(?: here)?)|thank you rejected: account unavailable:|"
        r"valid recipients, bye)|non[- ]?existent user|not (?:a valid (?:recipient|user here)|a local address|"
        r"email addresses)|rcpt <[^ ]+> does not exist|recipient address rejected\. \(in reply to rcpt to command\)|"
        r"recipient (?:[^ ]+ was not found in|address rejected: (?:access denied|invalid user|invalid-recipient|"
        r"user [^ ]+ does not exist|user unknown in [^ ]+ table|unknown user)|does not exist(?: on this system)?|"
        r"is not local|not (?:exist|found|ok)|refuses to accept your mail|unknown)|"
        r"requested action not taken: mailbox unavailable|resolver\.adr\.recipientnotfound|"
        r"said: 550[-\[ ]]5\.1\.1 [^ ]+ user unknown |sorry, (?:user unknown|badrcptto|no mailbox here by that name|"
        r"your envelope recipient has been denied)|that domain or user isn't in my list of allowed rcpthosts|"
        r"the (?:email account that you tried to reach does not exist|following recipients was undeliverable|"
        r"user's email name is not found)|there is no one at this address|this (?:address no longer accepts mail|"
        r"email address is wrong or no longer valid|recipient is in my badrecipientto list|"
        r"recipient is not in my validrcptto list|spectator does not exist|user doesn'?t have a [^ ]+ account)|"
        r"unknown (?:e-?mail address|local[- ]part|mailbox|recipient|user)|user (?:[^ ]+ was not found|"
        r"[^ ]+ does not exist|does not exist|missing home directory|not (?:active|exist|found|known)|unknown)|"
        r"utilisateur inconnu !|vdeliver: invalid or unknown virtual user|"
        r"your envelope recipient is in my badrcptto list)"
    ),
}

# Sisimai::SMTP::Status StandardCode, as reason: codes.
STATUS: dict[str, str] = {code: reason for reason, codes in {
    "blocked": "4.7.1 4.7.2 4.7.25 5.7.25",
    "contenterror": "4.6.0 4.6.2 4.6.5 5.6.0 5.6.1 5.6.2 5.6.3 5.6.5 5.6.6 5.6.7 5.6.8 5.6.9",
    "delivered": "2.1.5",
    "exceedlimit": "4.2.3 5.2.3",
    "expired": "4.4.1 4.4.7",
    "filtered": "4.2.4 5.1.4 5.2.0 5.2.1 5.2.4",
    "hasmoved": "4.1.6 5.1.6 5.7.17 5.7.18",
    "hostunknown": "5.1.2 5.4.4",
    "mailboxfull": "4.2.2 5.2.2",
    "mesgtoobig": "4.7.16 5.3.4 5.7.16",
    "networkerror": "4.4.2 4.4.4 4.4.6 5.4.0",
    "notaccept": "4.3.2 5.1.10 5.3.2 5.7.27",
    "rejected": "4.1.7 4.1.8 5.1.7 5.1.8",
    "securityerror": "4.7.5 4.7.6 4.7.7 4.7.12 4.7.15 4.7.24 5.5.6 5.7.0 5.7.1 5.7.2 5.7.3 5.7.4 5.7.5 5.7.6 5.7.7 "
                     "5.7.8 5.7.9 5.7.10 5.7.11 5.7.14 5.7.15 5.7.19 5.7.20 5.7.21 5.7.22 5.7.23 5.7.24 5.7.26",
    "suspend": "4.2.1 5.7.13",
    "systemerror": "4.1.9 4.3.3 4.3.5 4.5.3 4.5.5 5.1.9 5.3.0 5.3.3 5.3.5 5.4.3 5.5.4 5.5.5",
    "systemfull": "4.3.1 4.4.5 5.3.1",
    "toomanyconn": "5.5.3",
    "userunknown": "5.1.0 5.1.1 5.1.3",
}.items() for code in codes.split()}
