"""``python -m cl_analysis`` = the ``cl-analysis`` command."""

import sys

from .cli import main

sys.exit(main())
