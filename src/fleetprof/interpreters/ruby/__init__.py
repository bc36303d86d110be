"""Ruby (CRuby/YARV) support: discovery, struct layouts, a userspace reference walker and naming."""
