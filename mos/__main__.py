"""`python -m mos` runs the command line."""

from mos.cli import main

main()
