"""python -m mlm_export.cli: the mlm-export command."""

import sys

from . import main

sys.exit(main())
