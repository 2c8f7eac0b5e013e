"""The `ems` command line."""

import typer

app = typer.Typer(help="Site EMS: plan, simulate and control a multi-energy site.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """Site EMS controller."""
