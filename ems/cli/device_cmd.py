"""`ems device ...`: look at one device of a site, or scan a host for SunSpec models."""

import typer

app = typer.Typer(help="Read a site's devices and scan Modbus hosts.", no_args_is_help=True)

from ems.cli import device_read  # noqa: E402,F401,I001
from ems.cli import device_scan  # noqa: E402,F401
from ems.cli import device_trace  # noqa: E402,F401
