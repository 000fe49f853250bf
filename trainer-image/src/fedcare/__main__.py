"""``python -m fedcare`` is the ``fedcare`` command."""

import sys

from fedcare.cli import main

sys.exit(main())
