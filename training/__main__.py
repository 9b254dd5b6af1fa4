"""`python -m training`: the training package's commands alone (train, evaluate, release, data, benchmark)."""

import sys

from training.cli import main

sys.exit(main())
