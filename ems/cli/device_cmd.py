"""`ems device ...`: look at one device of a site, or scan a host for SunSpec models."""

import typer

app = typer.Typer(help="Read a site's devices and scan Modbus hosts.", no_args_is_help=True)
