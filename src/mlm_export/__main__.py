"""python -m mlm_export: the mlm-export command."""

import sys

from .cli import main

sys.exit(main())
