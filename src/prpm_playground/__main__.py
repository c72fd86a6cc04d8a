"""``python -m prpm_playground``: the operator CLI."""

import sys

from .cli import main

sys.exit(main())
