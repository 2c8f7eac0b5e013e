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
    err_console,
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
        _print_table(frame, cfg.site.currency, cfg.planning_carbon.kind)
    if plot is not None:
        _plot(frame, plot, cfg.site.currency)
        out_console().print(f"wrote {plot}")


@app.command("fetch")
def fetch(
    site: Annotated[str, typer.Argument(help="Site name (site_configs/NAME.toml) or config path.")],
    at: Annotated[str | None, typer.Option(
        "--at", help="Fetch as of this time (local, or ISO with offset) instead of now: "
                     "asks for the day before to the day after, e.g. to fill history.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One record per signal.")] = False,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Override a config value.")] = None,
) -> None:
    """Fetch the site's live prices and carbon now and record them in its signal cache.

    Exit code 0 when every signal was fetched, 1 when one failed (its last good data is kept
    and used, marked stale), 2 for a bad config or option."""
    from datetime import UTC, datetime

    from ems.cli.common import parse_local_time
    from ems.signals.site_signals import fetch_all, live_signals, state_dir

    with input_errors():
        loaded = load(site, sets)
        cfg = loaded.config
        now = parse_local_time(at, cfg.site.timezone) if at else datetime.now(UTC)
        if not live_signals(loaded):
            fail(f"{cfg.site.name} has no live signals to fetch: grid.tariff, grid.export_tariff "
                 "and grid.carbon are all tables or files")
        outcomes = fetch_all(loaded, now)
    tz = cfg.site.timezone
    records = []
    for o in outcomes:
        r = o.result
        status = "failed" if r is None else ("stale" if r.stale else "fetched")
        local = r.values.index.tz_convert(tz) if r is not None else None
        records.append({
            "signal": o.signal.name, "config": o.signal.config_field, "provider": o.signal.provider,
            "status": status, "unit": r.unit if r else None, "points": len(r.values) if r else 0,
            "first_local": local[0].isoformat() if local is not None else None,
            "last_local": local[-1].isoformat() if local is not None else None,
            "fetched_at": r.fetched_at.isoformat() if r and r.fetched_at else None,
            "message": o.error or (r.message if r else None),
        })
    if as_json:
        sys.stdout.write(json.dumps(records, ensure_ascii=False) + "\n")
    else:
        from rich.table import Table

        table = Table(title=f"signals fetched for {cfg.site.name} into {state_dir(loaded) / 'signals'}")
        for column in ("signal", "provider", "status", "points", "from (local)", "to (local)", "unit"):
            table.add_column(column)
        for rec in records:
            span = [(rec[k] or "-")[:16] for k in ("first_local", "last_local")]
            table.add_row(rec["signal"], rec["provider"], rec["status"], str(rec["points"]), *span,
                          rec["unit"] or "-")
        out_console().print(table)
        for rec in records:
            if rec["message"]:
                err_console().print(f"{rec['config']}: {rec['message']}", markup=False)
    if any(rec["status"] != "fetched" for rec in records):
        raise typer.Exit(1)


def _signal_frame(loaded, start, end):  # type: ignore[no-untyped-def]
    import pandas as pd

    from ems.config.models import TouTariff
    from ems.inputs import build_inputs
    from ems.inputs.site_inputs import tou_periods

    cfg = loaded.config
    inputs = build_inputs(loaded, start.astimezone(start.tzinfo), end)
    for note in inputs.notes:
        err_console().print(f"note: {note}", markup=False)
    f = inputs.frame
    local = f.index.tz_convert(cfg.site.timezone)
    out = pd.DataFrame(index=local)
    if isinstance(cfg.grid.tariff, TouTariff):
        out["tou_period"] = tou_periods(cfg.grid.tariff, local)
    out["import_price_per_kwh"] = f["import_price_per_kwh"].to_numpy()
    out["export_price_per_kwh"] = f["export_price_per_kwh"].to_numpy()
    for kind in ("average", "marginal"):
        if f"carbon_{kind}_g_per_kwh" in f:
            out[f"carbon_{kind}_g_per_kwh"] = f[f"carbon_{kind}_g_per_kwh"].to_numpy()
    pv = [c for c in f.columns if c.startswith("pv:")]
    load_cols = [c for c in f.columns if c.startswith("load:")]
    if pv:
        out["pv_kw"] = f[pv].sum(axis=1).to_numpy()
    if load_cols:
        out["load_kw"] = f[load_cols].sum(axis=1).to_numpy()
    return out


def _print_table(frame, currency: str, carbon_kind: str) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    table = Table(title=f"signals ({currency}/kWh, gCO2/kWh; plans weigh {carbon_kind} carbon), local time")
    for column in ["local time", *frame.columns]:
        table.add_column(column, justify="left" if column in ("local time", "tou_period") else "right")
    for t, row in frame.iterrows():
        cells = [t.strftime("%Y-%m-%d %H:%M %z")]
        cells += [str(v) if isinstance(v, str) else fmt_num(float(v), 4 if "price" in k else 1)
                  for k, v in row.items()]
        table.add_row(*cells)
    out_console().print(table)


def _plot(frame, path: Path, currency: str) -> None:  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    ax1.step(frame.index, frame["import_price_per_kwh"], where="post", label="import")
    ax1.step(frame.index, frame["export_price_per_kwh"], where="post", label="export")
    ax1.set_ylabel(f"{currency}/kWh")
    ax1.legend()
    for column, color in (("carbon_average_g_per_kwh", "tab:green"),
                          ("carbon_marginal_g_per_kwh", "tab:olive")):
        if column in frame:
            ax2.step(frame.index, frame[column], where="post", color=color, label=column.split("_")[1])
    ax2.set_ylabel("gCO2/kWh")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
