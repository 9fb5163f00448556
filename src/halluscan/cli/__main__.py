"""``python -m halluscan.cli``: the same as the ``halluscan`` script."""

import sys

from halluscan.cli import main

sys.exit(main())
