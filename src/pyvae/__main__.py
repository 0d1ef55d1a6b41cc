"""``python -m pyvae``: the same as the ``pyvae`` command."""

import sys

from pyvae.cli import main

if __name__ == "__main__":
    sys.exit(main())
