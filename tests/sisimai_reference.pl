#!/usr/bin/perl
# The reference the feedback classifier is measured against: Sisimai (Debian's libsisimai-perl), run on each
# file named on the command line. One JSON line per file, in the order given:
#
#   {"file": PATH, "verdict": true, "recipient": ADDR, "recipients": [ADDR, ...], "reason": REASON,
#    "deliverystatus": "5.1.1", "hard": true|false|null}
#   {"file": PATH, "verdict": false}                       Sisimai found nothing it calls a bounce
#
# "recipient" is Sisimai's first record; "hard" is its softbounce flag turned round (0 = hard, 1 = soft,
# -1 = neither, as for "feedback" and "vacation"). tests/test_feedback_classify.py runs this on a few samples
# to check tests/data/feedback/labels.json; `python -m tests.test_feedback_classify relabel` rewrites
# labels.json from a full run.
use strict;
use warnings;
use JSON::PP;
use Sisimai;

my $json = JSON::PP->new->canonical(1);
for my $path (@ARGV) {
    my $records = eval { Sisimai->make($path, 'vacation' => 1) } || [];
    if (!@$records) {
        print $json->encode({ 'file' => $path, 'verdict' => JSON::PP::false }), "\n";
        next;
    }
    my $first = $records->[0];
    my $soft  = $first->softbounce;
    my $hard  = $soft eq '0' ? JSON::PP::true : $soft eq '1' ? JSON::PP::false : undef;
    print $json->encode({
        'file'           => $path,
        'verdict'        => JSON::PP::true,
        'recipient'      => lc $first->recipient->address,
        'recipients'     => [ map { lc $_->recipient->address } @$records ],
        'reason'         => $first->reason,
        'deliverystatus' => $first->deliverystatus,
        'hard'           => $hard,
    }), "\n";
}
