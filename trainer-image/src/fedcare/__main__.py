"""``python -m fedcare`` is the ``fedcare`` command."""

import gc
import sys

from fedcare.cli import main

code = main()
gc.freeze()  # the final collection would walk torch's objects for seconds, for nothing
sys.exit(code)
