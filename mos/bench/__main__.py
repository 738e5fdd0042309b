"""`python -m mos.bench ...`: the `mos bench` command on its own (the same options)."""

import typer

from mos.bench.command import bench


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(bench)
    app()


if __name__ == "__main__":
    main()
