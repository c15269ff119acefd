"""``python -m ace.cli``: the ``ace`` command."""

from ace.cli import main

main()
