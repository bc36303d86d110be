# main -> Shop::Cart::total -> Shop::Cart::line -> Pricing::price (x3, recursive) -> Pricing::hot, which
# spends its time in Perl arithmetic and in a sort whose block calls Pricing::by_value (pp_sort runs the
# block in a runops loop of its own, under its C frames). ARGV[0]: seconds (default 2).
# Profiled by tests/bpf/test_perl_stacks.py; `# calls: f` marks the line a sub shows while f runs.
use strict;
use warnings;
use Time::HiRes qw(time);

package Pricing;

sub by_value {
    my ($x, $y) = @_;
    return $y <=> $x;
}

sub hot {
    my ($rounds) = @_;
    my $acc = 0;
    for my $i (1 .. $rounds) {
        $acc = ($acc * 31 + $i) % 1000003;
    }
    my @sorted = sort { by_value($a, $b) } (1 .. 300); # calls: by_value
    return $acc + $sorted[0];
}

sub price {
    my ($depth, $rounds) = @_;
    return hot($rounds) if $depth <= 1; # calls: hot
    return price($depth - 1, $rounds); # calls: price
}

package Shop::Cart;

sub new { return bless {}, shift }

sub total {
    my ($self, $rounds) = @_;
    return $self->line($rounds); # calls: Shop::Cart::line
}

sub line {
    my ($self, $rounds) = @_;
    return Pricing::price(3, $rounds); # calls: price-first
}

package main;

my $seconds = $ARGV[0] // 2;
my $cart = Shop::Cart->new;
my $deadline = time + $seconds;
while (time < $deadline) {
    $cart->total(20000); # calls: Shop::Cart::total
}
