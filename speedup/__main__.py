"""``python -m speedup``; see :mod:`speedup.cli`."""

from speedup.cli import main

main()
