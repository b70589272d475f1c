"""``python -m fitting``: see fitting/cli.py."""
import sys

from .cli import main

sys.exit(main())
