"""`python -m fleetprof`."""

import sys

from fleetprof.cli.main import main

sys.exit(main())
