"""`python -m conversion` is the `xlmr-convert` command line."""

import sys

from .cli import main

sys.exit(main())
