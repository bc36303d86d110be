# heavy does three times light's work, in pure Perl. ARGV[0]: seconds (default 2). Run under
# Devel::NYTProf (Perl's own profiler) by tests/bpf/test_perl_stacks.py, which compares their time split.
use strict;
use warnings;
use Time::HiRes qw(time);

sub heavy {
    my ($n) = @_;
    my $a = 0;
    for my $i (1 .. 3 * $n) {
        $a = ($a * 31 + $i) % 1000003;
    }
    return $a;
}

sub light {
    my ($n) = @_;
    my $a = 0;
    for my $i (1 .. $n) {
        $a = ($a * 31 + $i) % 1000003;
    }
    return $a;
}

my $deadline = time + ($ARGV[0] // 2);
while (time < $deadline) {
    heavy(20000);
    light(20000);
}
