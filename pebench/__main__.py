"""``python -m pebench`` is the ``pebench`` command."""

from pebench.cli import main

main()
