"""`python -m mos.bench ...`: the `mos bench` command on its own (the same options)."""

import sys

from mos.cli import main as mos_main


def main() -> None:
    mos_main(["bench", *sys.argv[1:]])


if __name__ == "__main__":
    main()
