"""`python -m experiments.cli ...` runs the `slosched` command."""

import sys

from experiments.cli import main

sys.exit(main())
