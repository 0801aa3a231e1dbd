"""``python -m middlewares``: the launcher; see :mod:`middlewares.cli`."""

from middlewares.cli import main

main()
