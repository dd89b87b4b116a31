#!/usr/bin/perl
# The reference the feedback classifier is measured against: Sisimai (Debian's libsisimai-perl), run on each
# file named on the command line. One JSON line per file, in the order given:
#
#   {"file": PATH, "verdict": true, "recipient": ADDR, "recipients": [ADDR, ...], "reason": REASON,
#    "deliverystatus": "5.1.1", "hard": true|false|null, "records": [RECORD, ...]}
#   {"file": PATH, "verdict": false}                       Sisimai found nothing it calls a bounce
#
# "recipient", "reason", "deliverystatus" and "hard" are Sisimai's first record's; "hard" is its softbounce
# flag turned round (0 = hard, 1 = soft, -1 = neither, as for "feedback" and "vacation"). "records" has one
# RECORD per recipient, {"recipient", "alias", "reason", "hard", "deliverystatus", "agent", "command",
# "diagnostic", "feedbacktype"}: "alias" is the other address Sisimai read for it (a DSN's Original-Recipient),
# "agent" the Sisimai module that read it (Postfix, RFC3464, ARF, ...), "command" the SMTP command the failure
# came at, "diagnostic" the Diagnostic-Code as Sisimai cleaned it.
# tests/test_feedback_classify.py runs this on a few samples to check tests/data/feedback/labels.json;
# `python -m tests.test_feedback_classify relabel` rewrites labels.json from a full run, and
# bench/classify_corpus.py compares the classifier with every record on any folder of notices.
use strict;
use warnings;
use JSON::PP;
use Sisimai;

my $json = JSON::PP->new->canonical(1)->ascii(1);

sub hard_of {
    my $soft = shift;
    return $soft eq '0' ? JSON::PP::true : $soft eq '1' ? JSON::PP::false : undef;
}

sub record_of {
    my $e = shift;
    return {
        'recipient'      => lc $e->recipient->address,
        'alias'          => lc($e->alias // ''),
        'reason'         => $e->reason,
        'hard'           => hard_of($e->softbounce),
        'deliverystatus' => $e->deliverystatus,
        'agent'          => $e->smtpagent,
        'command'        => $e->smtpcommand,
        'diagnostic'     => substr($e->diagnosticcode // '', 0, 300),
        'feedbacktype'   => $e->feedbacktype,
    };
}

for my $path (@ARGV) {
    my $records = eval { Sisimai->make($path, 'vacation' => 1) } || [];
    if (!@$records) {
        print $json->encode({ 'file' => $path, 'verdict' => JSON::PP::false }), "\n";
        next;
    }
    my $first = $records->[0];
    print $json->encode({
        'file'           => $path,
        'verdict'        => JSON::PP::true,
        'recipient'      => lc $first->recipient->address,
        'recipients'     => [ map { lc $_->recipient->address } @$records ],
        'reason'         => $first->reason,
        'deliverystatus' => $first->deliverystatus,
        'hard'           => hard_of($first->softbounce),
        'records'        => [ map { record_of($_) } @$records ],
    }), "\n";
}
