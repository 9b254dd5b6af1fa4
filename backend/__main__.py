"""`python -m backend`: the backend's commands alone (reconstruct, serve, keys, checkpoint tools)."""

import sys

from backend.cli import main

sys.exit(main())
