"""`ems plan`: solve one horizon from a given time and show it, hour by hour, with reasons."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ems.cli.common import fmt_money, fmt_num, input_errors, jsonable, load, out_console

if TYPE_CHECKING:
    from datetime import datetime

    import pandas as pd
    from rich.table import Table

    from ems.config.loader import LoadedSite
    from ems.inputs.site_inputs import SiteInputs
    from optimizer import Plan

COST_LABELS = {
    "import": "import", "export": "export revenue", "demand_charge": "demand charge",
    "carbon": "carbon", "degradation": "battery wear", "startup": "start-ups",
}

MAX_SLACK_LINES = 6

BINDING_LABELS = {
    "import_limit": "grid import limit",
    "export_limit": "grid export limit",
    "demand_peak": "import at the demand-charge peak",
}


@dataclass
class Solved:
    site: LoadedSite
    at_utc: datetime
    inputs: SiteInputs
    window: pd.DataFrame
    plan: Plan
    carbon_price: float
    objective: str


def plan(
    site: Annotated[str, typer.Argument(help="Site TOML file, or the name of a bundled site.")],
    at: Annotated[str, typer.Option(
        help="Plan start: local time in the site's timezone (2025-07-15T10:00) or with an "
             "offset/Z; rounded down to the step.")],
    carbon_price: Annotated[float | None, typer.Option(
        min=0, help="Carbon price per kg CO2 in the site's currency (default: the config's)."),
    ] = None,
    sets: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a config field, e.g. battery.capacity_kwh=4000 (repeatable)."),
    ] = None,
    hours: Annotated[int, typer.Option(min=1, help="Hours shown in the table.")] = 24,
    plot: Annotated[Path | None, typer.Option(
        help="Save a figure (PNG): power flows, price and carbon, storage levels.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the plan as JSON: headline and one record per step.")] = False,
) -> None:
    """Plan one horizon from a given time and show what each asset does, hour by hour, and why.

    The plan starts from the config's initial state (battery SOC, tank level). Example:
    ems plan guangdong_factory --at 2025-07-15T10:00 --plot plan.png
    """
    with input_errors():
        loaded = load(site, sets)
        solved = solve_at(loaded, at, carbon_price)
        if plot is not None:
            from ems.cli.plot import plot_plan

            plot_plan(solved, plot)
    if as_json:
        import json

        typer.echo(json.dumps(plan_doc(solved), indent=1))
        return
    console = out_console()
    for line in headline(solved):
        console.print(line, markup=False)
    console.print(hour_table(solved, hours))
    console.print("why: a simple reading of each hour against the horizon's prices and limits, "
                  "not the optimiser's full reasoning.", markup=False)
    if plot is not None:
        console.print(f"figure: {plot}", markup=False)


def solve_at(site: LoadedSite, at: str, carbon_price: float | None) -> Solved:
    from datetime import timedelta

    from ems.cli.common import check_window, parse_local_time
    from ems.inputs.site_inputs import build_inputs
    from ems.planning.pipeline import make_problem, with_margin
    from ems.planning.problem_builder import floor_to_step, horizon_steps, initial_state, settings_from
    from optimizer import RollingPlanner

    cfg = site.config
    sm = cfg.planning.step_minutes
    start = floor_to_step(parse_local_time(at, cfg.site.timezone), sm)
    n = horizon_steps(cfg)
    end = start + timedelta(minutes=sm * n)
    check_window(cfg, start, end, f"--at {at}")
    inputs = build_inputs(site, start, end)
    settings = settings_from(cfg, carbon_price)
    # the service's pipeline: plans keep its margin under the import limit (the window shown
    # carries the planned limit)
    problem = make_problem(site, inputs, start, initial_state(cfg), settings)
    result = RollingPlanner().solve(problem)
    window = with_margin(inputs.window(inputs.frame.index[0], n), cfg.service.plan_import_margin_fraction)
    return Solved(site=site, at_utc=start, inputs=inputs, window=window, plan=result,
                  carbon_price=settings.carbon_price_per_kg, objective=settings.objective.value)


def plan_emissions(s: Solved) -> dict[str, float]:
    """Planned grid-import emissions (kg CO2) by each configured carbon signal, average first."""
    dt = s.plan.step_minutes / 60.0
    imports = s.plan.series["grid.import_kw"]
    out = {}
    for kind in ("average", "marginal"):
        column = f"carbon_{kind}_g_per_kwh"
        if column in s.window:
            out[kind] = sum(kw * g * dt / 1000.0 for kw, g in zip(imports, s.window[column], strict=True))
    return out


# ---------------------------------------------------------------- headline


def _local(s: Solved, t: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    import pandas as pd

    return pd.Timestamp(t).tz_convert(s.site.config.site.timezone).strftime(fmt)


def tz_name(s: Solved) -> str:
    return s.site.config.site.timezone


def _local_iso(s: Solved, t: Any) -> str:
    import pandas as pd

    return str(pd.Timestamp(t).tz_convert(s.site.config.site.timezone).isoformat())


def binding_label(name: str) -> str:
    if name in BINDING_LABELS:
        return BINDING_LABELS[name]
    asset, _, limit = name.rpartition(".")
    text = {"soc_min": "at minimum SOC", "soc_max": "at maximum SOC", "power": "at full power"}
    return f"{asset} {text.get(limit, limit.replace('_', ' '))}" if asset else name


def headline(s: Solved) -> list[str]:
    cfg = s.site.config
    p = s.plan
    cur = cfg.site.currency
    n = len(p.instants_utc)
    hours = n * p.step_minutes / 60
    iso = _local_iso(s, s.at_utc)
    local = f"{iso[:10]} {iso[11:16]} {tz_name(s)} (UTC{iso[19:]})"
    lines = [f"Plan for {cfg.site.name} from {local}: {hours:g} h in {n} steps of "
             f"{p.step_minutes} min, from the config's initial state"]
    objective = s.objective
    if s.carbon_price:
        objective += f", carbon price {s.carbon_price:g} {cur}/kg"
    lines.append(f"Objective: {objective}")
    decimals = 0 if max(abs(v) for v in [p.total_cost, *p.costs.values()]) >= 1000 else 2
    terms = [f"{COST_LABELS.get(k, k.replace('_', ' '))} {fmt_num(v, decimals)}"
             for k, v in p.costs.items() if abs(v) > 0.005 or k in ("import", "demand_charge")]
    lines.append(f"Cost ({cur}): total {fmt_num(p.total_cost, decimals)} = " + ", ".join(terms))
    by_kind = plan_emissions(s)
    lines.append("Emissions: " + ", ".join(f"{fmt_num(kg)} kgCO2 by {kind} intensity"
                                           for kind, kg in by_kind.items())
                 + f" (the plan weighs {s.inputs.carbon_kind})")
    charges = [dc for dc in cfg.grid.demand_charges if dc.price_per_kw > 0]
    if charges:
        peak = max(p.series["grid.import_kw"])
        rates = ", ".join(f"{dc.price_per_kw:g} {cur}/kW of the {dc.billing} peak"
                          + (f" ({dc.name})" if dc.name and len(charges) > 1 else "") for dc in charges)
        lines.append(f"Peak import: {fmt_num(peak)} kW in this plan; the demand charge"
                     f"{' is' if len(charges) == 1 else 's are'} {rates}")
    sv = p.solver
    gap = "-" if sv.mip_gap is None else f"{sv.mip_gap:.3%}"
    lines.append(f"Solver: {sv.status} via {sv.termination}, {sv.wall_time_s:.2f} s "
                 f"(HiGHS {sv.solver_time_s:.2f} s), gap {gap}, {sv.integer_variables} on/off "
                 "variables" + (", LP fallback used" if sv.used_lp_fallback else ""))
    if not p.slacks:
        lines.append("Slacks: none, every limit is met")
    shown = p.slacks if len(p.slacks) <= MAX_SLACK_LINES else p.slacks[:MAX_SLACK_LINES - 1]
    for sl in shown:
        at = _local(s, p.instants_utc[min(sl.first_step, n - 1)])
        lines.append(f"Slack: {sl.asset} {sl.limit.replace('_', ' ')}: {fmt_num(sl.amount)} "
                     f"{sl.unit} from {at} (penalty {fmt_money(sl.penalty_cost)} {cur})")
    rest = p.slacks[len(shown):]
    if rest:
        lines.append(f"Slack: {len(rest)} more ({', '.join(sorted({sl.limit for sl in rest}))}), "
                     f"penalty {fmt_money(sum(sl.penalty_cost for sl in rest))} {cur}; "
                     "all are in --json")
    binding = [(k, v) for k, v in p.binding.items() if v]
    if binding:
        parts = []
        for k, v in binding:
            if k.endswith(".starts"):
                parts.append(f"{k.rsplit('.', 1)[0]} starts {v} time{'s' if v > 1 else ''}")
            else:
                parts.append(f"{binding_label(k)} in {v} of {n} steps")
        lines.append("Binding: " + "; ".join(parts))
    else:
        lines.append("Binding: no limit is reached")
    return lines


# ---------------------------------------------------------------- per step and per hour


def frames(s: Solved) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    """(per-step totals, hourly rows, why per step, why per hour)."""
    import numpy as np
    import pandas as pd

    from ems.cli import explain as ex

    cfg = s.site.config
    tz = cfg.site.timezone
    steps = ex.site_frame(cfg, s.window, s.plan)
    ctx = ex.context(cfg, steps, s.carbon_price)
    window_flag = np.logical_or.reduce([s.window[c].to_numpy().astype(bool) for c in s.window.columns
                                        if c == "demand_window" or c.startswith("demand_window:")])
    at_peak = window_flag & (steps["import_kw"].to_numpy() >= 0.99 * ctx.peak_import_kw) & (
        ctx.peak_import_kw > 0)
    ev = ex.ev_reasons(cfg, steps, s.plan, s.inputs.sessions, at_peak)
    why_steps = ex.explain(steps, ctx, at_peak, [ex.ev_text(d) for d in ev])
    hours = ex.hourly(steps, tz)
    keys = ex.hour_keys(pd.DatetimeIndex(steps.index), tz)
    # an hour is at the peak when most of its steps are
    peak_hour = pd.Series(at_peak.astype(float), index=keys).groupby(level=0).mean() >= 0.5
    ev_hour = ex.merge_hourly(ev, keys, pd.DatetimeIndex(hours.index))
    why_hours = ex.explain(hours, ctx, np.asarray(peak_hour.reindex(hours.index), dtype=bool),
                           [ex.ev_text(d, limit=2) for d in ev_hour])
    return steps, hours, why_steps, why_hours


def hour_table(s: Solved, n_hours: int) -> Table:
    from rich.table import Table

    cfg = s.site.config
    tz = cfg.site.timezone
    _, hours, _, why = frames(s)
    shown = hours.iloc[:n_hours]
    cap = sum(b.capacity_kwh for b in cfg.battery)
    table = Table(title=f"Hour by hour, local time ({tz}); powers are hourly means in kW, "
                        "SOC and tank at the end of the hour",
                  title_justify="left", pad_edge=False)
    cols: list[tuple[str, str]] = [
        ("Local\ntime", "left"), (f"Import\n{cfg.site.currency}/kWh", "right"),
        ("Carbon\ng/kWh", "right"),
    ]
    if cfg.pv:
        cols.append(("PV\nkW", "right"))
    exports = bool((s.window["export_limit_kw"] > 0).any())
    cols += [("Load\nkW", "right"), ("Grid in\nkW", "right")]
    if exports:
        cols.append(("Grid out\nkW", "right"))
    if cfg.battery:
        cols += [("Batt chg\nkW", "right"), ("Batt dis\nkW", "right"), ("SOC\n%", "right")]
    if cfg.ev_charger:
        cols.append(("EV\nkW", "right"))
    if cfg.electrolyser:
        cols.append(("Electr.\nkW", "right"))
    if cfg.hydrogen_tank:
        cols.append(("Tank\nkg", "right"))
    cols.append(("Why", "left"))
    for name, justify in cols:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    from ems.cli.explain import fmt_price

    previous = ""
    for i, (t, r) in enumerate(shown.iterrows()):
        local = _local(s, t, "%H:%M")
        if i == 0 or local == "00:00":
            local = _local(s, t, "%a %d %H:%M")
        if local == previous:  # the repeated hour when clocks go back
            local = _local(s, t, "%H:%M %z")
        previous = local
        row = [local, fmt_price(float(r["price"])), f"{r['carbon']:.0f}"]
        if cfg.pv:
            row.append(_kw(r["pv_kw"]))
        row += [_kw(r["load_kw"]), _kw(r["import_kw"])]
        if exports:
            row.append(_kw(r["export_kw"]))
        if cfg.battery:
            row += [_kw(r["charge_kw"]), _kw(r["discharge_kw"]),
                    f"{100 * r['soc_kwh'] / cap:.0f}" if cap else "-"]
        if cfg.ev_charger:
            row.append(_kw(r["ev_kw"]))
        if cfg.electrolyser:
            row.append(_kw(r["electrolyser_kw"]))
        if cfg.hydrogen_tank:
            row.append(f"{r['tank_kg']:.0f}")
        row.append(why[i])
        table.add_row(*row)
    if n_hours > len(hours):
        table.caption = f"the horizon has {len(hours)} hours"
    return table


def _kw(x: float) -> str:
    return "" if abs(x) < 0.5 else f"{x:,.0f}"


# ---------------------------------------------------------------- JSON


def plan_doc(s: Solved) -> dict[str, Any]:
    cfg = s.site.config
    tz = cfg.site.timezone
    p = s.plan
    _, _, why_steps, _ = frames(s)
    inputs = s.window
    records = []
    for k, t in enumerate(inputs.index):
        rec: dict[str, Any] = {"utc": t.isoformat(), "local": t.tz_convert(tz).isoformat()}
        for col in inputs.columns:
            rec[col] = inputs[col].iloc[k]
        for key, values in p.series.items():
            rec[key] = values[k]
        rec["why"] = why_steps[k]
        records.append(rec)
    n = len(p.instants_utc)
    doc = {
        "site": cfg.site.name, "timezone": tz, "currency": cfg.site.currency,
        "at_utc": s.at_utc.isoformat(), "at_local": _local_iso(s, s.at_utc),
        "step_minutes": p.step_minutes, "n_steps": n,
        "objective": s.objective, "carbon_price_per_kg": s.carbon_price,
        "costs": p.costs, "total_cost": p.total_cost,
        "emissions_kg": p.emissions_kg, "carbon_kind": s.inputs.carbon_kind,
        "emissions_kg_by_kind": plan_emissions(s),
        "solver": asdict(p.solver),
        "slacks": [dict(asdict(sl), start_utc=p.instants_utc[min(sl.first_step, n - 1)].isoformat(),
                        start_local=_local_iso(s, p.instants_utc[min(sl.first_step, n - 1)]))
                   for sl in p.slacks],
        "binding": p.binding,
        "steps": records,
    }
    return jsonable(doc)  # type: ignore[no-any-return]
