"""`python -m infill ...` is the `infill` command."""

import sys

from .cli import main

sys.exit(main())
