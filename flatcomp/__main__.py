"""``python -m flatcomp``: the book's command line, :mod:`flatcomp.lab.cli` (``list``, ``run``,
``report``, ``plan``, ``pack``, ``bench``, ``ticket``)."""

from __future__ import annotations

import sys

from flatcomp.lab.cli import main

if __name__ == "__main__":
    sys.exit(main())
