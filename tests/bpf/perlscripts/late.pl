# main -> run -> Loader::call -> spin -> an XSUB in a C library loaded mid-run through DynaLoader, one
# library after another; ARGV[0]: seconds per library, ARGV[1..]: the libraries (each exports the XSUB
# fleetprof_spin_xs(ms)). The first samples in a library the profiler never saw wait for its unwind table and
# are finished in userspace; their Perl frames (walked in the kernel when each sample was taken) still sit
# under spin.
use strict;
use warnings;
use DynaLoader;

sub spin {
    my ($xsub, $ms) = @_;
    $xsub->($ms); # calls: call
}

package Loader;

my $count = 0;

sub call {
    my ($path, $ms) = @_;
    my $lib = DynaLoader::dl_load_file($path, 0) or die DynaLoader::dl_error();
    my $symbol = DynaLoader::dl_find_symbol($lib, "fleetprof_spin_xs") or die DynaLoader::dl_error();
    my $xsub = DynaLoader::dl_install_xsub("Loader::spin_" . $count++, $symbol, $path);
    main::spin($xsub, $ms); # calls: spin
}

package main;

sub run {
    my ($ms, @paths) = @_;
    Loader::call($_, $ms) for @paths; # calls: Loader::call
}

my $seconds = shift @ARGV;
run(int($seconds * 1000), @ARGV); # calls: run
