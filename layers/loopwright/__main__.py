"""``python -m loopwright``: the command line."""

from loopwright.cli.app import main

main()
