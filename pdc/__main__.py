"""`python -m pdc`: the pdc command line."""
import sys

from .cli import main

sys.exit(main())
