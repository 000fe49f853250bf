"""``python -m fedcare_operator``: the ``fedcare-operator`` command."""

import sys

from fedcare_operator.cli import main

sys.exit(main())
