"""``python -m middlewares``: the launcher; see :mod:`middlewares.launch.cli`."""

from middlewares.launch.cli import main

main()
