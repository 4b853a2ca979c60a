"""``python -m lossvar``: the ``lossvar`` command."""

import sys

from .cli import main

sys.exit(main())
