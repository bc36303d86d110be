"""PHP (Zend engine) support: discovery, struct layouts, a userspace reference walker and naming."""
