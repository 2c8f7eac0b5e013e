"""`ems whatif`: simulate a site over days under strategies and scenarios, compare KPIs."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ems.cli.common import (
    fail,
    fmt_money,
    fmt_num,
    input_errors,
    jsonable,
    load,
    out_console,
    parse_day,
    parse_minutes,
)

if TYPE_CHECKING:
    from datetime import date

    from rich.table import Table

    from ems.config.loader import LoadedSite
    from ems.whatif.simulate import SimulationResult


class StrategyChoice(StrEnum):
    optimised = "optimised"
    baseline = "baseline"
    both = "both"


class ForecastChoice(StrEnum):
    perfect = "perfect"
    noisy = "noisy"
    model = "model"


class FileFormat(StrEnum):
    csv = "csv"
    parquet = "parquet"


MONEY_KPIS = ("energy_cost", "demand_charge", "total_cost")
COUNT_KPIS = ("electrolyser_starts", "import_limit_exceeded_steps")


@dataclass
class Run:
    """One simulation to run: a name for the table, a strategy and config overrides."""

    name: str
    strategy: str
    overrides: list[str] = field(default_factory=list)
    site: LoadedSite | None = None
    result: SimulationResult | None = None


def split_scenario(text: str) -> tuple[str, list[str]]:
    """'NAME: k=v, k=v' -> (NAME, ['k=v', 'k=v']); commas inside [] or quotes do not split."""
    if ":" not in text:
        fail(f"--scenario {text!r}: expected \"NAME: key=value, key=value\"")
    name, rest = text.split(":", 1)
    name = name.strip()
    if not name:
        fail(f"--scenario {text!r}: the scenario needs a name before ':'")
    items: list[str] = []
    depth, quote, current = 0, "", ""
    for ch in rest:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(current.strip())
            current = ""
            continue
        current += ch
    items.append(current.strip())
    items = [i for i in items if i]
    bad = [i for i in items if "=" not in i]
    if bad:
        fail(f"--scenario {name!r}: {bad[0]!r} is not key=value")
    if not items:
        fail(f"--scenario {name!r}: no key=value overrides given")
    return name, items


def file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "run"


def plan_runs(strategy: StrategyChoice, scenarios: list[str], sets: list[str]) -> list[Run]:
    runs: list[Run] = []
    if strategy in (StrategyChoice.baseline, StrategyChoice.both):
        runs.append(Run("baseline", "baseline", list(sets)))
    if strategy in (StrategyChoice.optimised, StrategyChoice.both):
        runs.append(Run("optimised", "optimised", list(sets)))
    scenario_strategy = "baseline" if strategy is StrategyChoice.baseline else "optimised"
    for text in scenarios:
        name, items = split_scenario(text)
        runs.append(Run(name, scenario_strategy, [*sets, *items]))
    stems: dict[str, str] = {}
    for r in runs:
        stem = file_stem(r.name).lower()
        if stem in stems:
            fail(f"--scenario {r.name!r}: name clashes with run {stems[stem]!r}; "
                 "choose another name")
        stems[stem] = r.name
    return runs


def whatif(
    site: Annotated[str, typer.Argument(help="Site TOML file, or the name of a bundled site.")],
    start: Annotated[str | None, typer.Option(
        help="First local day, YYYY-MM-DD (default: the site's data_start).")] = None,
    days: Annotated[int, typer.Option(min=1, help="Number of days to simulate.")] = 7,
    strategy: Annotated[StrategyChoice, typer.Option(
        help="Rolling optimiser, the rule-based baseline, or both.")] = StrategyChoice.both,
    carbon_price: Annotated[float | None, typer.Option(
        min=0, help="Carbon price per kg CO2 in the site's currency (default: the config's)."),
    ] = None,
    sets: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a config field for every run, e.g. battery.capacity_kwh=4000."),
    ] = None,
    scenarios: Annotated[list[str] | None, typer.Option(
        "--scenario",
        help='An extra run: "NAME: key=value, key=value" on top of --set (repeatable).'),
    ] = None,
    replan_every: Annotated[str | None, typer.Option(
        help="Re-plan interval, e.g. 1h, 30min, 15min (default: from the config).")] = None,
    forecast: Annotated[ForecastChoice, typer.Option(
        help="Perfect foresight, forecasts with growing errors (noisy), or the site's own "
             "PV/load/EV forecasts trained on the data before each re-plan (model).")
    ] = ForecastChoice.perfect,
    seed: Annotated[int, typer.Option(help="Random seed of the noisy forecast.")] = 0,
    workers: Annotated[int, typer.Option(min=1, help="Parallel workers for a run.")] = 1,
    control_step: Annotated[int, typer.Option(
        "--control-step", min=1, help="Seconds between two decisions of the controller (the plant "
                                      "steps as often); must divide the plan step.")] = 60,
    as_json: Annotated[bool, typer.Option("--json", help="Print only a JSON document.")] = False,
    out: Annotated[Path | None, typer.Option(
        help="Write per-step results per run and summary.json to this directory.")] = None,
    fmt: Annotated[FileFormat, typer.Option(
        "--format", help="File format of the per-step results in --out.")] = FileFormat.csv,
) -> None:
    """Simulate a site over a period and compare KPIs of strategies and scenarios.

    Example: ems whatif guangdong_factory --start 2025-07-14 --days 7
    --scenario "big battery: battery.capacity_kwh=4000, battery.max_charge_kw=2000"
    """
    with input_errors():
        runs = plan_runs(strategy, scenarios or [], sets or [])
        for r in runs:
            r.site = load(site, r.overrides)
        base = runs[0].site
        assert base is not None
        for r in runs[1:]:
            assert r.site is not None
            if r.site.config.site.timezone != base.config.site.timezone:
                fail(f"--scenario {r.name!r}: changes site.timezone; runs must share one")
        cfg = base.config
        first_day = parse_day(start, "--start") if start else _default_start(base)
        if forecast is ForecastChoice.model:
            first_day = _model_start(base, first_day, explicit=start is not None)
        replan = parse_minutes(replan_every, "--replan-every") if replan_every else None
        if (cfg.planning.step_minutes * 60) % control_step:
            fail(f"--control-step {control_step} s: must divide the {cfg.planning.step_minutes}-minute "
                 "plan step")
        for r in runs:
            assert r.site is not None
            _check_run(r, first_day, days, replan)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        for r in runs:
            r.result = _simulate(r, first_day, days, carbon_price, replan, forecast.value, seed,
                                 workers, show_progress=not as_json and sys.stderr.isatty(),
                                 control_step_s=control_step)
        from ems.whatif.kpi import accounting_carbon_kind

        doc = summary_doc(cfg.site.name, first_day, days, runs, cfg.site.currency,
                          accounting_carbon_kind(cfg))
        if out is not None:
            write_out(out, runs, doc, fmt, cfg.site.timezone)
    if as_json:
        import json

        typer.echo(json.dumps(doc, indent=2))
        return
    console = out_console()
    console.print(f"What-if: {cfg.site.name}, {days} day(s) from {first_day} "
                  f"({cfg.site.timezone})", markup=False, style="bold")
    console.print(kpi_table(runs, cfg.site.currency))
    for line in notes(runs, base, carbon_price, replan, forecast.value, out, fmt):
        console.print(line, markup=False)


def _default_start(site: LoadedSite) -> date:
    from ems.cli.common import data_period

    first, _ = data_period(site.config)
    if first is None:
        fail("--start: not given and the config has no site.data_start")
    return first


def _model_start(site: LoadedSite, first_day: date, explicit: bool) -> date:
    """--forecast model trains on the data before the start: without --start, begin after
    MODEL_HISTORY_DAYS days of data; an explicit --start needs MODEL_MIN_HISTORY_DAYS."""
    from datetime import timedelta

    from ems.cli.common import data_period
    from ems.forecast.site import MODEL_HISTORY_DAYS, MODEL_MIN_HISTORY_DAYS

    first, _ = data_period(site.config)
    if first is None:
        return first_day
    if not explicit:
        return max(first_day, first + timedelta(days=MODEL_HISTORY_DAYS))
    if first_day < first + timedelta(days=MODEL_MIN_HISTORY_DAYS):
        fail(f"--forecast model --start {first_day}: the forecasts train on the data before the "
             f"start and need {MODEL_MIN_HISTORY_DAYS} days of it; {site.config.site.name} has data "
             f"from {first}, so the earliest --start is {first + timedelta(days=MODEL_MIN_HISTORY_DAYS)}")
    return first_day


def _check_run(r: Run, first_day: date, days: int, replan: int | None) -> None:
    from datetime import timedelta

    from ems.cli.common import check_window, local_midnight

    assert r.site is not None
    cfg = r.site.config
    sm = cfg.planning.step_minutes
    if replan is not None and replan % sm:
        fail(f"--replan-every {replan} min: must be a multiple of the {sm}-minute step")
    tz = cfg.site.timezone
    start = local_midnight(first_day, tz)
    end = local_midnight(first_day + timedelta(days=days), tz)
    label = f"--start {first_day} --days {days}"
    if r.name not in ("baseline", "optimised"):
        label += f" (scenario {r.name!r})"
    # planning horizons that look past the data see a persistence forecast (see simulate)
    check_window(cfg, start, end, label, hint=_latest_start(r, days), horizon=False)


def _latest_start(r: Run, days: int) -> str:
    from datetime import timedelta

    from ems.cli.common import data_period, local_midnight

    assert r.site is not None
    cfg = r.site.config
    first, last = data_period(cfg)
    if last is None:
        return ""
    tz = cfg.site.timezone
    limit = local_midnight(last + timedelta(days=1), tz)
    day = last
    while local_midnight(day + timedelta(days=days), tz) > limit:
        day -= timedelta(days=1)
    if first is not None and day < first:
        return f"the data are too short for {days} day(s)"
    return f"the latest --start for {days} day(s) is {day}"


def _simulate(r: Run, first_day: date, days: int, carbon_price: float | None, replan: int | None,
              forecast: str, seed: int, workers: int, show_progress: bool,
              control_step_s: int = 60) -> SimulationResult:
    from ems.whatif.simulate import WhatIfOptions, simulate

    kwargs: dict[str, Any] = dict(start=first_day, days=days, strategy=r.strategy,
                                  carbon_price_per_kg=carbon_price, replan_every_minutes=replan,
                                  forecast=forecast, seed=seed, control_step_s=control_step_s)
    if "workers" in WhatIfOptions.__dataclass_fields__:
        kwargs["workers"] = workers
    opts = WhatIfOptions(**kwargs)
    assert r.site is not None
    if not show_progress:
        return simulate(r.site, opts)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ems.cli.common import err_console

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("steps"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=err_console(), transient=False) as bar:
        task = bar.add_task(f"{r.name:>12}", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return simulate(r.site, opts, progress=progress)


def summary_doc(site_name: str, first_day: date, days: int, runs: list[Run], currency: str,
                carbon_kind: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "site": site_name, "start": first_day.isoformat(), "days": days,
        "currency": currency, "carbon_kind": carbon_kind, "runs": {},
    }
    for r in runs:
        assert r.result is not None
        doc["runs"][r.name] = {
            "strategy": r.strategy, "overrides": r.overrides,
            "kpis": {k: float(v) for k, v in r.result.kpis.items()},
            "solver": dict(r.result.solver_summary()),
            "end_state": end_state(r),
        }
    return jsonable(doc)  # type: ignore[no-any-return]


def write_out(out: Path, runs: list[Run], doc: dict[str, Any], fmt: FileFormat, tz: str) -> None:
    import json

    import pandas as pd

    for r in runs:
        assert r.result is not None
        steps = r.result.steps.copy()
        local = pd.DatetimeIndex(steps.index).tz_convert(tz)
        if fmt is FileFormat.csv:
            steps.insert(0, "local", [t.isoformat() for t in local])
            steps.index = [t.isoformat() for t in steps.index]
            steps.index.name = "utc"
            steps.to_csv(out / f"{file_stem(r.name)}.csv")
        else:
            steps.insert(0, "local", local)
            steps.to_parquet(out / f"{file_stem(r.name)}.parquet")
    (out / "summary.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- the table


def kpi_label(key: str, currency: str) -> str:
    from ems.whatif.kpi import KPI_LABELS

    label = KPI_LABELS.get(key, key.replace("_", " "))
    return f"{label} ({currency})" if key in MONEY_KPIS else label


def fmt_kpi(key: str, value: float) -> str:
    if key in MONEY_KPIS:
        return fmt_money(value)
    if key == "self_consumption":
        return f"{value:.1%}"
    if key == "battery_cycles":
        return f"{value:.2f}"
    if key in COUNT_KPIS:
        return f"{value:,.0f}"
    return fmt_num(value)


def fmt_diff(key: str, base: float, other: float) -> str:
    """Difference other - base, with its percentage of base: '-5,446 (-21.2%)'."""
    d = other - base
    if key == "self_consumption":
        return "±0 pp" if abs(d) < 5e-4 else f"{d * 100:+.1f} pp"
    if key in MONEY_KPIS and max(abs(base), abs(other)) >= 1000:
        size = fmt_num(abs(d), 0)
    else:
        size = fmt_kpi(key, abs(d))
    if size.strip("0.,%") == "":
        return "±0"
    text = ("+" if d > 0 else "-") + size
    if base:
        text += f" ({d / abs(base):+.1%})"
    return text


def kpi_table(runs: list[Run], currency: str) -> Table:
    """KPIs (rows) of every run (columns), with the difference when exactly two runs are a
    baseline and one other."""
    from rich.table import Table

    from ems.whatif.kpi import KPI_LABELS

    kpis = [r.result.kpis if r.result is not None else {} for r in runs]
    keys = [k for k in KPI_LABELS if any(k in d for d in kpis)]
    keys += [k for d in kpis for k in d if k not in keys]
    base_i = next((i for i, r in enumerate(runs) if r.name == "baseline"), None)
    other_i = 1 - base_i if base_i is not None and len(runs) == 2 else None
    table = Table()
    table.add_column("KPI", no_wrap=True)
    for r in runs:
        table.add_column(r.name, justify="right", no_wrap=True)
    if other_i is not None:
        table.add_column("vs baseline", justify="right", no_wrap=True)

    def add(label: str, key: str, values: list[float | None], fmt: Any, **kw: Any) -> None:
        row = [label] + ["-" if v is None else fmt(key, v) for v in values]
        if other_i is not None and base_i is not None:
            b, o = values[base_i], values[other_i]
            row.append("-" if b is None or o is None else fmt_diff(key, b, o))
        table.add_row(*row, **kw)

    for key in keys:
        values = [None if d.get(key) is None else float(d[key]) for d in kpis]
        add(kpi_label(key, currency), key, values, fmt_kpi, end_section=key == "total_cost")
    ends = [end_state(r) for r in runs]
    for label, key in (("Battery kWh, start→end", "battery"),
                       ("Hydrogen kg, start→end", "hydrogen")):
        unit = "kwh" if key == "battery" else "kg"
        if not any(f"{key}_end_{unit}" in e for e in ends):
            continue
        row = [label] + [
            f"{fmt_num(e[f'{key}_start_{unit}'])}→{fmt_num(e[f'{key}_end_{unit}'])}"
            if f"{key}_end_{unit}" in e else "-" for e in ends]
        if other_i is not None and base_i is not None:
            b, o = ends[base_i].get(f"{key}_end_{unit}"), ends[other_i].get(f"{key}_end_{unit}")
            row.append("-" if b is None or o is None else "end " + fmt_diff(key, b, o))
        table.add_row(*row, style="dim")
    return table


def end_state(r: Run) -> dict[str, float]:
    """Energy in storage at the start and at the end of the run (costs do not value it)."""
    if r.result is None or r.site is None or r.result.steps.empty:
        return {}
    cfg = r.site.config
    last = r.result.steps.iloc[-1]
    out: dict[str, float] = {}
    soc = [f"{b.name}.soc_kwh" for b in cfg.battery if f"{b.name}.soc_kwh" in last.index]
    if soc:
        out["battery_start_kwh"] = sum(b.initial_soc_fraction * b.capacity_kwh for b in cfg.battery)
        out["battery_end_kwh"] = float(last[soc].sum())
    tanks = [f"{t.name}.level_kg" for t in cfg.hydrogen_tank if f"{t.name}.level_kg" in last.index]
    if tanks:
        out["hydrogen_start_kg"] = sum(t.initial_kg for t in cfg.hydrogen_tank)
        out["hydrogen_end_kg"] = float(last[tanks].sum())
    return out


def notes(runs: list[Run], base: LoadedSite, carbon_price: float | None, replan: int | None,
          forecast: str, out: Path | None, fmt: FileFormat) -> list[str]:
    from ems.whatif.kpi import accounting_carbon_kind

    cfg = base.config
    cur = cfg.site.currency
    price = carbon_price if carbon_price is not None else (
        cfg.planning.carbon_price_per_kg if cfg.planning.objective == "carbon_price" else 0.0)
    lines = [
        f"Costs are in {cur}, the site's currency. Emissions use {accounting_carbon_kind(cfg)} grid "
        f"carbon intensity (grid.carbon in the config); plans weigh {cfg.planning_carbon.kind}.",
    ]
    lines.append("Every run: the site's controller decides each control step (--control-step) from "
                 "what its devices report; the baseline is that controller's rules, without a plan.")
    if any(r.strategy == "optimised" for r in runs):
        lines.append(
            f"Optimised runs: {forecast} forecast, re-plan every "
            f"{replan or cfg.planning.replan_every_minutes} min, "
            f"{cfg.planning.horizon_hours:g} h horizon"
            + (f", carbon price {price:g} {cur}/kg" if price else "") + ".")
    if cfg.battery or cfg.hydrogen_tank:
        lines.append("Costs do not value energy left in storage at the end (see the last rows).")
    if cfg.ev_sessions is not None:
        lines.append("EV figures count sessions that arrive and depart within the period.")
    base_run = next((r for r in runs if r.name == "baseline"), None)
    if base_run is not None and len(runs) > 2 and base_run.result is not None:
        b = base_run.result.kpis.get("total_cost", 0.0)
        parts = []
        for r in runs:
            if r is base_run or r.result is None:
                continue
            t = r.result.kpis.get("total_cost", 0.0)
            parts.append(f"{r.name} {fmt_diff('total_cost', b, t)}")
        lines.append(f"Total cost vs baseline ({cur}): " + "; ".join(parts))
    for r in runs:
        if r.strategy != "optimised" or r.result is None:
            continue
        s = r.result.solver_summary()
        if not s.get("solves"):
            continue
        lines.append(
            f"Solver ({r.name}): {s['solves']:.0f} solves, median "
            f"{fmt_num(s.get('median_solve_wall_ms', 0))} ms per solve "
            f"(HiGHS {fmt_num(s.get('median_highs_ms', 0))} ms), slowest "
            f"{fmt_num(s.get('max_solve_wall_ms', 0))} ms, "
            f"LP fallbacks {s.get('lp_fallbacks', 0):.0f}, "
            f"plans with slacks {s.get('plans_with_slacks', 0):.0f}")
    if out is not None:
        lines.append(f"Per-step results: {out}/<run>.{fmt.value}; KPIs: {out}/summary.json")
    return lines
