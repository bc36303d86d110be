"""Perl 5 support: discovery, struct layouts, the reference walker and frame names."""
