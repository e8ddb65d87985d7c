"""``python -m toilray`` is the ``toilray`` command."""

from toilray.cli import main

main()
