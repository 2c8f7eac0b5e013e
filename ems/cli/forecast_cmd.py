"""`ems forecast show SITE --at TIME`: the forecasts at one instant; `ems forecast accuracy SITE
--month YYYY-MM`: backtest the PV, load and EV forecasts over a held-back month."""

from __future__ import annotations

import json
import math
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from ems.cli.common import err_console, fail, fmt_num, input_errors, jsonable, load, out_console

if TYPE_CHECKING:
    from rich.table import Table

    from ems.forecast.accuracy import AccuracyReport

app = typer.Typer(help="Forecasts of PV, load and EV sessions and their accuracy.", no_args_is_help=True)


@app.command("accuracy")
def accuracy(
    site: Annotated[str, typer.Argument(help="Site name (site_configs/NAME.toml) or config path.")],
    month: Annotated[str, typer.Option(help="Held-back local month, YYYY-MM (e.g. 2020-03).")],
    horizon: Annotated[int, typer.Option(min=1, max=168, help="Forecast horizon, hours.")] = 24,
    as_json: Annotated[bool, typer.Option("--json", help="Print only a JSON document.")] = False,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Override a config value.")] = None,
) -> None:
    """Rolling-origin backtest over one month: one forecast per day at local midnight, trained
    only on data before it, against the site's measured PV and load (kW) and recorded EV
    sessions. Errors are forecast - actual: a positive bias means the forecast was too high.
    The baseline is 'yesterday' (the 24 h measured before the origin, repeated)."""
    from ems.forecast.accuracy import backtest

    with input_errors():
        loaded = load(site, sets)
        show = not as_json and sys.stderr.isatty()
        try:
            if show:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

                with Progress(TextColumn("forecasts"), BarColumn(), MofNCompleteColumn(),
                              console=err_console(), transient=True) as bar:
                    task = bar.add_task("days", total=None)
                    report = backtest(loaded, month, horizon,
                                      progress=lambda done, total: bar.update(task, completed=done,
                                                                              total=total))
            else:
                report = backtest(loaded, month, horizon)
        except ValueError as exc:
            fail(f"--month {month}: {exc}")
    if as_json:
        typer.echo(json.dumps(jsonable(report.to_dict()), indent=2))
        return
    console = out_console()
    console.print(f"Forecast accuracy: {report.site}, {report.month} ({report.timezone}), "
                  f"{len(report.origins)} daily forecasts at local midnight, {horizon} h ahead",
                  markup=False, style="bold")
    console.print(hour_table(report))
    console.print(total_table(report))
    for line in notes(report):
        console.print(line, markup=False)


@app.command("show")
def show(
    site: Annotated[str, typer.Argument(help="Site name (site_configs/NAME.toml) or config path.")],
    at: Annotated[str, typer.Option("--at", help="Forecast origin: local time, or ISO with offset.")],
    hours: Annotated[int, typer.Option(min=1, max=168, help="Hours ahead.")] = 48,
    as_json: Annotated[bool, typer.Option("--json", help="Print only a JSON document.")] = False,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Override a config value.")] = None,
) -> None:
    """The forecasts the planner would get at --at (trained on the data before it), hour by hour
    in local time next to what was measured, and the EV sessions expected to arrive."""
    import pandas as pd

    from ems.cli.common import parse_local_time
    from ems.forecast.site import SiteForecaster, history_start, measured_history
    from ems.inputs.site_inputs import data_limit_utc

    with input_errors():
        loaded = load(site, sets)
        cfg = loaded.config
        tz = cfg.site.timezone
        step = pd.Timedelta(minutes=cfg.planning.step_minutes)
        origin = pd.Timestamp(parse_local_time(at, tz, "--at")).ceil(step)
        end = origin + pd.Timedelta(hours=hours)
        limit = data_limit_utc(loaded)
        known_end = min(end, pd.Timestamp(limit)) if limit is not None else end
        from ems.forecast.site import ForecastSettings

        first = history_start(loaded, origin.to_pydatetime(), ForecastSettings())
        if origin.to_pydatetime() <= first:
            fail(f"--at {at}: no data before it to train on ({cfg.site.name} has data from "
                 f"{cfg.site.data_start})")
        if limit is not None and origin >= pd.Timestamp(limit):
            fail(f"--at {at}: after the data of {cfg.site.name} (to {cfg.site.data_end})")
        actuals, sessions = measured_history(loaded, first, known_end.to_pydatetime())
        forecaster = SiteForecaster(loaded, actuals, sessions)
        index = pd.date_range(origin, end, freq=step, inclusive="left")
        try:
            fc = forecaster.forecast(index)
        except ValueError as exc:
            fail(f"--at {at}: {exc}")
        ev = forecaster.ev_sessions(origin.to_pydatetime(), end.to_pydatetime()) if cfg.ev_charger else []
    measured = actuals.reindex(index)
    hourly = pd.concat({"forecast": fc, "measured": measured[fc.columns]}, axis=1)
    hourly = hourly.groupby(index.floor("h")).mean()
    if as_json:
        doc = {
            "site": cfg.site.name, "origin_utc": origin.isoformat(), "hours": hours,
            "hourly": [{"hour_utc": t.isoformat(), "hour_local": t.tz_convert(tz).isoformat(),
                        **{f"{kind}:{col}": row[(kind, col)] for kind, col in hourly.columns}}
                       for t, row in hourly.iterrows()],
            "ev_sessions": [{"session_id": s.session_id, "charger": s.charger,
                             "arrival_utc": s.arrival_utc.isoformat(),
                             "departure_utc": s.departure_utc.isoformat(), "energy_kwh": s.energy_kwh}
                            for s in ev],
        }
        typer.echo(json.dumps(jsonable(doc), indent=2))
        return
    from rich.table import Table

    console = out_console()
    console.print(f"Forecasts of {cfg.site.name} made at {origin.tz_convert(tz):%Y-%m-%d %H:%M} "
                  f"({tz}), {hours} h ahead, hourly means in kW (forecast / measured)",
                  markup=False, style="bold")
    table = Table()
    table.add_column("local hour")
    for col in fc.columns:
        table.add_column(col, justify="right")
    for t, row in hourly.iterrows():
        table.add_row(f"{t.tz_convert(tz):%a %m-%d %H:%M}",
                      *[f"{_f(row[('forecast', c)])} / {_f(row[('measured', c)])}" for c in fc.columns])
    console.print(table)
    if cfg.ev_charger:
        energy = sum(s.energy_kwh for s in ev)
        console.print(f"EV sessions expected to arrive: {len(ev)} ({fmt_num(energy, 0)} kWh)", markup=False)
        for s in ev[:20]:
            a = pd.Timestamp(s.arrival_utc).tz_convert(tz)
            d = pd.Timestamp(s.departure_utc).tz_convert(tz)
            console.print(f"  {s.charger}: {a:%a %H:%M} to {d:%a %H:%M}, {s.energy_kwh:.1f} kWh",
                          markup=False)
        if len(ev) > 20:
            console.print(f"  ... and {len(ev) - 20} more (--json lists all)", markup=False)
    console.print("'-' = not measured (after the site's data).", markup=False)


def _f(x: float, decimals: int = 1) -> str:
    return "-" if x is None or not math.isfinite(x) else fmt_num(x, decimals)


def hour_table(report: AccuracyReport) -> Table:
    """Per lead hour: MAE and bias (kW) of every PV and load column."""
    from rich.table import Table

    table = Table(title="Per horizon hour (kW; bias = mean of forecast - actual)")
    table.add_column("hour", justify="right")
    for s in report.series:
        table.add_column(f"{s.column} MAE", justify="right")
        table.add_column(f"{s.column} bias", justify="right")
    hours = len(report.series[0].per_hour) if report.series else 0
    for h in range(hours):
        row = [f"+{h}"]
        for s in report.series:
            row += [_f(s.per_hour[h].mae), _f(s.per_hour[h].bias)]
        table.add_row(*row)
    return table


def total_table(report: AccuracyReport) -> Table:
    from rich.table import Table

    table = Table(title="Over the whole horizon")
    for name in ("series", "MAE", "bias", "RMSE", "mean actual", "yesterday MAE", "skill"):
        table.add_column(name, justify="right" if name != "series" else "left")
    for s in report.series:
        t, b = s.total, s.baseline_total
        table.add_row(s.column + " (kW)", _f(t.mae), _f(t.bias), _f(t.rmse), _f(s.mean_actual_kw),
                      _f(b.mae), f"{s.skill:+.0%}" if math.isfinite(s.skill) else "-")
    ev = report.ev
    if ev is not None:
        table.add_row("EV sessions per day", _f(ev.count.mae), _f(ev.count.bias), _f(ev.count.rmse),
                      _f(ev.mean_count_actual), "-", "-")
        table.add_row("EV energy per day (kWh)", _f(ev.energy_kwh.mae, 0), _f(ev.energy_kwh.bias, 0),
                      _f(ev.energy_kwh.rmse, 0), _f(ev.mean_energy_actual_kwh, 0), "-", "-")
    return table


def notes(report: AccuracyReport) -> list[str]:
    lines = [
        "Errors are forecast - actual: a positive bias means the forecast was too high. "
        "PV figures include night steps.",
        "Skill = 1 - MAE / MAE of the yesterday baseline (the 24 h measured before the origin, "
        "repeated over the horizon).",
    ]
    if report.ev is not None:
        names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
        ev = report.ev
        pairs = ", ".join(f"{n} {_f(a)}/{_f(f)}" for n, a, f in
                          zip(names, ev.per_weekday_actual, ev.per_weekday_forecast, strict=True))
        lines.append(f"EV sessions per day, recorded/forecast: {pairs}.")
    return lines
