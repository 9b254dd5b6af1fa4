"""`python -m zeroshape_w` is the `zeroshape-w` command (e.g. under `torchrun -m zeroshape_w train ...`)."""

import sys

from zeroshape_w.cli import main

sys.exit(main())
