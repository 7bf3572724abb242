"""`python -m app` runs the `tidings` command line."""

import sys

from app.cli import main

sys.exit(main())
