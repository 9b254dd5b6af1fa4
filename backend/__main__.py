"""`python -m backend` is the `zeroshape-w` command."""

import sys

from backend.cli import main

sys.exit(main())
