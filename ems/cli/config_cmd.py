"""`ems config check` and `ems config schema`."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Annotated

import typer

from ems.cli.common import fmt_num, input_errors, load

if TYPE_CHECKING:
    from ems.config.loader import LoadedSite
    from ems.config.models import SiteConfig, TimeWindow

app = typer.Typer(help="Check a site configuration, or print its JSON Schema.",
                  no_args_is_help=True)


@app.command("check")
def check(
    site: Annotated[str, typer.Argument(help="Site TOML file, or the name of a bundled site.")],
    sets: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a field, e.g. battery.capacity_kwh=4000 (repeatable).")] = None,
    data: Annotated[bool, typer.Option(
        "--data/--no-data", help="Also read every data file over data_start..data_end.")] = True,
    simulate: Annotated[bool, typer.Option(
        "--simulate", help="Also check what the device simulators need (ems run --simulate).")] = False,
    store_url: Annotated[str | None, typer.Option(
        "--store", help="Check this store URL instead of the config's (as ems run --store).")] = None,
) -> None:
    """Validate a site configuration as `ems run` does before it starts, and summarise it.

    Exit code 2 with one line per problem (field and value) when `ems run` would refuse it."""
    from ems.cli.preflight import preflight

    with input_errors():
        loaded = load(site, sets)
        from ems.runtime.api_guard import api_token

        api_token(loaded.config.service)  # the token `ems run` would serve the API with
        checked = preflight(loaded, store_url, simulate=simulate, data=data)
        lines = summary(loaded) + checked
    for line in lines:
        typer.echo(line)


@app.command("schema")
def schema() -> None:
    """Print the JSON Schema of a site configuration file."""
    import json

    from ems.config.models import SiteConfig

    typer.echo(json.dumps(SiteConfig.model_json_schema(), indent=2))


def _windows(windows: list[TimeWindow]) -> str:
    out = []
    for w in windows:
        text = f"{w.start}-{w.end}"
        if len(w.months) != 12:
            text += f" months {','.join(str(m) for m in w.months)}"
        if w.days != "all":
            text += f" {w.days}"
        out.append(text)
    return ", ".join(out)


def _tariff(t: object, currency: str) -> str:
    from ems.config.models import DynamicTariff, FixedTariff, PriceAdjustments, SeriesTariff, TouTariff

    def adjustments(a: PriceAdjustments) -> str:
        parts = [f"+ {a.adder_per_kwh:g} {currency}/kWh" if a.adder_per_kwh else "",
                 f"+ {a.tax_fraction:.0%} tax" if a.tax_fraction else "",
                 f"x {a.exchange_rate:g} exchange rate" if a.exchange_rate else ""]
        return "".join(f", {x}" for x in parts if x)

    if isinstance(t, FixedTariff):
        return f"fixed {t.price_per_kwh:g} {currency}/kWh"
    if isinstance(t, SeriesTariff):
        unit = f", {t.unit}" if t.unit else ""
        return f"series from {t.file} (column {t.column}{unit}){adjustments(t)}"
    if isinstance(t, DynamicTariff):
        src = t.source
        where = (getattr(src, "area", None) or getattr(src, "tariff_code", None)
                 or f"home {getattr(src, 'home', 0)}")
        return f"dynamic from {src.provider} ({where}), fetched by `ems signals fetch`{adjustments(t)}"
    assert isinstance(t, TouTariff)
    prices = ", ".join(f"{k} {v:g}" for k, v in sorted(t.prices.items(), key=lambda kv: kv[1]))
    return (f"time-of-use, {len(t.rules)} rules, default {t.default_period}; "
            f"{currency}/kWh: {prices}")


def summary(site: LoadedSite) -> list[str]:
    """A short, human summary of a valid configuration."""
    from ems.config.loader import data_files

    cfg: SiteConfig = site.config
    s, p, g = cfg.site, cfg.planning, cfg.grid
    cur = s.currency
    lines = [
        f"OK: {site.path}",
        f"site: {s.name}, timezone {s.timezone}, currency {cur}, "
        f"lat {s.latitude:g} lon {s.longitude:g}, "
        f"data {s.data_start or '?'} to {s.data_end or '?'}",
        f"planning: horizon {p.horizon_hours:g} h in {p.step_minutes}-min steps, re-plan every "
        f"{p.replan_every_minutes} min, objective {p.objective}"
        + (f" (carbon price {p.carbon_price_per_kg:g} {cur}/kg)" if p.carbon_price_per_kg else ""),
        f"grid: import limit {fmt_num(g.import_limit_kw)} kW"
        + (f" ({len(g.import_limit_rules)} time rules)" if g.import_limit_rules else "")
        + f", export limit {fmt_num(g.export_limit_kw)} kW"
        + (f" ({len(g.export_limit_rules)} time rules)" if g.export_limit_rules else ""),
        f"  tariff: {_tariff(g.tariff, cur)}",
        f"  export tariff: {_tariff(g.export_tariff, cur)}",
    ]
    if not g.demand_charges:
        lines.append("  demand charge: none")
    for dc in g.demand_charges:
        lines.append(f"  demand charge{' ' + dc.name if dc.name else ''}: {dc.price_per_kw:g} {cur}/kW of "
                     f"the {dc.billing} peak"
                     + (f", counted {_windows(dc.windows)}" if dc.windows else ", all hours")
                     + (f", months {dc.months}" if dc.months is not None else ""))
    from ems.signals.site_signals import carbon_label

    weighed = cfg.planning_carbon.kind
    for c in g.carbon:
        use = "plans weigh it" if c.kind == weighed else "reported"
        lines.append(f"  carbon: {carbon_label(c)}, {use}")
    for pv in cfg.pv:
        source = f"weather {pv.weather_file}" if pv.weather_file else f"series {pv.series_file}"
        lines.append(f"pv {pv.name}: {fmt_num(pv.kwp)} kWp, tilt {pv.tilt_deg:g}°, azimuth "
                     f"{pv.azimuth_deg:g}°, {source}"
                     + ("" if pv.curtailable else ", not curtailable"))
    for b in cfg.battery:
        lines.append(
            f"battery {b.name}: {fmt_num(b.capacity_kwh)} kWh, charge "
            f"{fmt_num(b.max_charge_kw)} kW / discharge {fmt_num(b.max_discharge_kw)} kW, "
            f"SOC {b.soc_min_fraction:.0%}-{b.soc_max_fraction:.0%} "
            f"(start {b.initial_soc_fraction:.0%}), efficiency {b.charge_efficiency:g}/"
            f"{b.discharge_efficiency:g}, wear {b.degradation_cost_per_kwh:g} {cur}/kWh"
            + ("" if b.allow_grid_charging else ", no grid charging"))
    if cfg.ev_charger:
        kinds = Counter((round(c.max_power_kw, 2), round(c.min_power_kw, 2), c.v2g)
                        for c in cfg.ev_charger)
        parts = [f"{n} x {mx:g} kW (min {mn:g} kW{', V2G' if v2g else ''})"
                 for (mx, mn, v2g), n in kinds.items()]
        total = sum(c.max_power_kw for c in cfg.ev_charger)
        lines.append(f"ev chargers: {len(cfg.ev_charger)}: {', '.join(parts)}; "
                     f"{fmt_num(total)} kW in total")
    ev = cfg.ev_sessions
    if ev is not None:
        if ev.kind == "daily":
            for d in ev.schedule:
                lines.append(f"  ev sessions: daily ({d.days}) {d.arrive}-{d.depart}, "
                             f"{d.energy_kwh:g} kWh each on {len(d.chargers)} charger(s)")
        else:
            lines.append(f"  ev sessions: recorded, from {ev.file}")
    for e in cfg.electrolyser:
        lines.append(
            f"electrolyser {e.name}: {fmt_num(e.rated_kw)} kW, min load {e.min_load_fraction:.0%}, "
            f"{e.kwh_per_kg:g} kWh/kg, standby {e.standby_kw:g} kW, start-up {e.startup_cost:g} "
            f"{cur}, min up {e.min_up_hours:g} h / down {e.min_down_hours:g} h, tank {e.tank}")
    for t in cfg.hydrogen_tank:
        lines.append(f"hydrogen tank {t.name}: {fmt_num(t.capacity_kg)} kg, "
                     f"floor {t.floor_kg:g} kg, start {t.initial_kg:g} kg"
                     + (f", worth {t.terminal_value_per_kg:g} {cur}/kg at the end"
                        if t.terminal_value_per_kg else ""))
    for o in cfg.hydrogen_offtake:
        what = (f"from {o.file}" if o.file else
                ", ".join(f"{w.kg_per_hour:g} kg/h {_windows([w])}" for w in o.schedule))
        lines.append(f"hydrogen offtake {o.name} (tank {o.tank}): {what}")
    for ld in cfg.load:
        lines.append(f"load {ld.name}: {ld.file} ({ld.column})"
                     + (f" x {ld.scale:g}" if ld.scale != 1 else ""))
    files = data_files(cfg)
    lines.append(f"data files ({len(files)}):")
    lines += [f"  {where}: {site.resolve(f)}" for where, f in files]
    return lines
