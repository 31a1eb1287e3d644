"""`python -m experiments.cli`: the slosched command line."""

import sys

from experiments.cli import main

sys.exit(main())
