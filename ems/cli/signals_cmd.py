"""`ems signals show SITE`: prices, carbon and forecasts behind the plan for a window, local time."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from ems.cli.common import (
    check_window,
    fail,
    fmt_num,
    input_errors,
    jsonable,
    load,
    local_midnight,
    out_console,
    parse_day,
)

app = typer.Typer(help="Inspect the price and carbon signals a site plans against.", no_args_is_help=True)


@app.command("show")
def show(
    site: Annotated[str, typer.Argument(help="Site name (site_configs/NAME.toml) or config path.")],
    from_day: Annotated[str, typer.Option("--from", help="First local day, YYYY-MM-DD.")],
    to_day: Annotated[str | None, typer.Option("--to", help="Last local day (inclusive).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One record per step, UTC and local.")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG of prices and carbon.")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Override a config value.")] = None,
) -> None:
    """Import/export prices (with time-of-use periods), carbon intensity and PV/load for a window."""
    with input_errors():
        loaded = load(site, sets)
        cfg = loaded.config
        first = parse_day(from_day, "--from")
        last = parse_day(to_day, "--to") if to_day else first
        if last < first:
            fail(f"--to {last} is before --from {first}")
        tz = cfg.site.timezone
        start = local_midnight(first, tz)
        end = local_midnight(last + timedelta(days=1), tz)
        check_window(cfg, start, end, f"--from {first} --to {last}", horizon=False)
        frame = _signal_frame(loaded, start, end)
    if as_json:
        records = []
        for t, row in frame.iterrows():
            record = {"timestamp_utc": t.tz_convert("UTC").isoformat(), "timestamp_local": t.isoformat()}
            record.update({k: jsonable(v) for k, v in row.items()})
            records.append(record)
        sys.stdout.write(json.dumps(records, ensure_ascii=False) + "\n")
    else:
        _print_table(frame, cfg.site.currency, cfg.grid.carbon.kind)
    if plot is not None:
        _plot(frame, plot, cfg.site.currency, cfg.grid.carbon.kind)
        out_console().print(f"wrote {plot}")


def _signal_frame(loaded, start, end):  # type: ignore[no-untyped-def]
    import pandas as pd

    from ems.config.models import TouTariff
    from ems.inputs import build_inputs
    from ems.inputs.site_inputs import tou_periods

    cfg = loaded.config
    inputs = build_inputs(loaded, start.astimezone(start.tzinfo), end)
    f = inputs.frame
    local = f.index.tz_convert(cfg.site.timezone)
    out = pd.DataFrame(index=local)
    if isinstance(cfg.grid.tariff, TouTariff):
        out["tou_period"] = tou_periods(cfg.grid.tariff, local)
    out["import_price_per_kwh"] = f["import_price_per_kwh"].to_numpy()
    out["export_price_per_kwh"] = f["export_price_per_kwh"].to_numpy()
    out[f"carbon_{inputs.carbon_kind}_g_per_kwh"] = f["carbon_g_per_kwh"].to_numpy()
    pv = [c for c in f.columns if c.startswith("pv:")]
    load_cols = [c for c in f.columns if c.startswith("load:")]
    if pv:
        out["pv_kw"] = f[pv].sum(axis=1).to_numpy()
    if load_cols:
        out["load_kw"] = f[load_cols].sum(axis=1).to_numpy()
    return out


def _print_table(frame, currency: str, carbon_kind: str) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    table = Table(title=f"signals ({currency}/kWh, gCO2/kWh {carbon_kind}), local time")
    for column in ["local time", *frame.columns]:
        table.add_column(column, justify="left" if column in ("local time", "tou_period") else "right")
    for t, row in frame.iterrows():
        cells = [t.strftime("%Y-%m-%d %H:%M %z")]
        cells += [str(v) if isinstance(v, str) else fmt_num(float(v), 4 if "price" in k else 1)
                  for k, v in row.items()]
        table.add_row(*cells)
    out_console().print(table)


def _plot(frame, path: Path, currency: str, carbon_kind: str) -> None:  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    ax1.step(frame.index, frame["import_price_per_kwh"], where="post", label="import")
    ax1.step(frame.index, frame["export_price_per_kwh"], where="post", label="export")
    ax1.set_ylabel(f"{currency}/kWh")
    ax1.legend()
    carbon = next(c for c in frame.columns if c.startswith("carbon_"))
    ax2.step(frame.index, frame[carbon], where="post", color="tab:green")
    ax2.set_ylabel(f"gCO2/kWh ({carbon_kind})")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
