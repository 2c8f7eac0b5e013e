"""The `ems` command line."""

import typer

from ems.cli import (
    config_cmd,
    device_cmd,
    export_cmd,
    forecast_cmd,
    plan_cmd,
    run_cmd,
    signals_cmd,
    sim_cmd,
    whatif_cmd,
)

app = typer.Typer(help="Site EMS: plan, simulate and control a multi-energy site.",
                  no_args_is_help=True)
app.add_typer(config_cmd.app, name="config")
app.add_typer(device_cmd.app, name="device")
app.add_typer(signals_cmd.app, name="signals")
app.add_typer(forecast_cmd.app, name="forecast")
app.command("whatif")(whatif_cmd.whatif)
app.command("plan")(plan_cmd.plan)
app.command("sim")(sim_cmd.sim)
app.command("run")(run_cmd.run)
app.command("export")(export_cmd.export)


@app.callback()
def main() -> None:
    """Site EMS controller."""
