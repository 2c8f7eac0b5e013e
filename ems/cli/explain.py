"""A plan in figures a person can read: per-step site totals, hourly rows and a short "why".

The "why" is a simple reading of each row against the horizon's prices and limits (what the
price is now, what it is later, which limit is reached), not the optimiser's full reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from ems.config.models import SiteConfig
    from ems.inputs.site_inputs import EvSessionEvent
    from optimizer import Plan

EPS = 1e-6


def fmt_price(p: float) -> str:
    return f"{p:.2f}" if abs(p) >= 0.2 else f"{p:.3f}"


def _sum(plan_frame: pd.DataFrame, suffix: str, names: list[str]) -> np.ndarray:
    cols = [f"{n}{suffix}" for n in names if f"{n}{suffix}" in plan_frame.columns]
    if not cols:
        return np.zeros(len(plan_frame))
    return np.asarray(plan_frame[cols].sum(axis=1).to_numpy(), dtype=float)


def site_frame(cfg: SiteConfig, window: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """Per-step totals of the site (UTC index): prices, carbon, limits and every flow."""
    from ems.config.models import TouTariff
    from ems.inputs.site_inputs import tou_periods

    pf = plan.to_frame()
    pf.index = window.index
    batteries = [b.name for b in cfg.battery]
    ev_charge = [c for c in pf.columns if c.startswith("ev:") and c.endswith(".charge_kw")]
    ev_dis = [c for c in pf.columns if c.startswith("ev:") and c.endswith(".discharge_kw")]
    f = pd.DataFrame(index=window.index)
    f["price"] = window["import_price_per_kwh"].to_numpy()
    f["export_price"] = window["export_price_per_kwh"].to_numpy()
    f["carbon"] = window["carbon_g_per_kwh"].to_numpy()
    f["import_limit"] = window["import_limit_kw"].to_numpy()
    f["export_limit"] = window["export_limit_kw"].to_numpy()
    f["pv_kw"] = _sum(pf, ".output_kw", [p.name for p in cfg.pv])
    f["pv_curtailed_kw"] = _sum(pf, ".curtailed_kw", [p.name for p in cfg.pv])
    f["load_kw"] = _sum(pf, ".demand_kw", [ld.name for ld in cfg.load])
    f["import_kw"] = pf["grid.import_kw"].to_numpy()
    f["export_kw"] = pf["grid.export_kw"].to_numpy()
    f["charge_kw"] = _sum(pf, ".charge_kw", batteries)
    f["discharge_kw"] = _sum(pf, ".discharge_kw", batteries)
    f["soc_kwh"] = _sum(pf, ".soc_kwh", batteries)
    f["ev_kw"] = (pf[ev_charge].sum(axis=1).to_numpy() if ev_charge else 0.0) - (
        pf[ev_dis].sum(axis=1).to_numpy() if ev_dis else 0.0)
    f["electrolyser_kw"] = _sum(pf, ".power_kw", [e.name for e in cfg.electrolyser])
    f["hydrogen_kg"] = _sum(pf, ".hydrogen_kg", [e.name for e in cfg.electrolyser])
    f["tank_kg"] = _sum(pf, ".level_kg", [t.name for t in cfg.hydrogen_tank])
    if isinstance(cfg.grid.tariff, TouTariff):
        local = pd.DatetimeIndex(window.index).tz_convert(cfg.site.timezone)
        f["period"] = tou_periods(cfg.grid.tariff, local)
    else:
        f["period"] = ""
    return f


def hour_keys(index: pd.DatetimeIndex, tz: str) -> pd.DatetimeIndex:
    """UTC instant of the local hour each step starts in (safe across DST and :30 zones)."""
    local = index.tz_convert(tz)
    return pd.DatetimeIndex(index - pd.to_timedelta(local.minute, unit="min")
                            - pd.to_timedelta(local.second, unit="s"))


def hourly(steps: pd.DataFrame, tz: str) -> pd.DataFrame:
    """Local hours: mean of powers, prices and carbon; end-of-hour SOC and tank level."""
    keys = hour_keys(pd.DatetimeIndex(steps.index), tz)
    numeric = [c for c in steps.columns if c != "period"]
    last_cols = ["soc_kwh", "tank_kg"]
    sum_cols = ["hydrogen_kg"]
    mean_cols = [c for c in numeric if c not in (*last_cols, *sum_cols)]
    g = steps.groupby(keys)
    out = g[mean_cols].mean()
    out[last_cols] = g[last_cols].last()
    out[sum_cols] = g[sum_cols].sum()
    out["period"] = g["period"].first()
    out["steps"] = g.size()
    out.index.name = "utc"
    return out


@dataclass(frozen=True)
class Context:
    price_min: float
    price_max: float
    peak_import_kw: float
    demand_charge: bool
    carbon_price: float
    carbon_min: float
    battery_thr_kw: float
    capacity_kwh: float
    soc_min_kwh: float
    soc_max_kwh: float


def context(cfg: SiteConfig, steps: pd.DataFrame, carbon_price: float) -> Context:
    power = sum(b.max_charge_kw + b.max_discharge_kw for b in cfg.battery)
    return Context(
        price_min=float(steps["price"].min()), price_max=float(steps["price"].max()),
        peak_import_kw=float(steps["import_kw"].max()),
        demand_charge=any(dc.price_per_kw > 0 for dc in cfg.grid.demand_charges),
        carbon_price=carbon_price, carbon_min=float(steps["carbon"].min()),
        battery_thr_kw=max(1.0, 0.005 * power),
        capacity_kwh=sum(b.capacity_kwh for b in cfg.battery),
        soc_min_kwh=sum(b.soc_min_fraction * b.capacity_kwh for b in cfg.battery),
        soc_max_kwh=sum(b.soc_max_fraction * b.capacity_kwh for b in cfg.battery),
    )


def _period(name: object, price: float) -> str:
    label = str(name).replace("_", " ") if name else ""
    return f"{label} price {fmt_price(price)}" if label else f"price {fmt_price(price)}"


def explain(rows: pd.DataFrame, ctx: Context, at_peak: np.ndarray,
            extra: list[list[str]] | None = None) -> list[str]:
    """One short reason per row (hourly or per step).

    `at_peak[i]`: the row's import is at the horizon's peak (which sets the demand charge);
    `extra[i]`: reasons found elsewhere (EV sessions) to add.
    """
    out = []
    prices = rows["price"].to_numpy()
    net_all = (rows["charge_kw"] - rows["discharge_kw"]).to_numpy()
    capped = ctx.demand_charge & np.asarray(at_peak, dtype=bool)
    # rows where the battery discharges to keep import at the peak
    shaving = capped & (net_all < -ctx.battery_thr_kw)
    cap = f"{ctx.peak_import_kw:,.0f} kW"
    for i, (_, r) in enumerate(rows.iterrows()):
        why: list[str] = []
        price, net = float(r["price"]), float(net_all[i])
        later = float(prices[i + 1:].max()) if i + 1 < len(prices) else price
        shaving_later = bool(shaving[i + 1:].any())
        surplus = float(r["pv_kw"] - r["load_kw"] - r["ev_kw"] - r["electrolyser_kw"])
        low_carbon = ctx.carbon_price > 0 and r["carbon"] <= ctx.carbon_min * 1.05 + EPS
        if net > ctx.battery_thr_kw:
            if surplus >= 0.8 * net:
                why.append("charge: PV surplus")
            elif price <= ctx.price_min + EPS:
                why.append(f"charge: {_period(r['period'], price)}")
            elif capped[i] and shaving_later:
                why.append(f"charge: room under the {cap} peak, for later")
            elif later > price + EPS:
                why.append(f"charge: {fmt_price(price)} now, {fmt_price(later)} later")
            else:
                why.append(f"charge at {fmt_price(price)}")
            if low_carbon:
                why.append(f"low carbon {r['carbon']:.0f} g/kWh")
        elif net < -ctx.battery_thr_kw:
            if price >= ctx.price_max - EPS:
                why.append(f"discharge: {_period(r['period'], price)}")
                if capped[i]:
                    why.append(f"import at the {cap} peak")
            elif capped[i]:
                why.append(f"discharge: cap import at the {cap} peak")
            else:
                why.append(f"discharge: {_period(r['period'], price)}")
        elif ctx.capacity_kwh > 0:
            if r["soc_kwh"] <= ctx.soc_min_kwh + 0.5 and price > ctx.price_min + EPS:
                why.append("battery empty (SOC min)")
            elif r["soc_kwh"] >= ctx.soc_max_kwh - 0.5 and price <= ctx.price_min + EPS:
                why.append("battery full")
            elif shaving_later and price >= later - EPS:
                why.append(f"battery holds its energy for the {cap} peak later")
            elif capped[i]:
                why.append(f"import at the {cap} peak")
        if extra is not None:
            why.extend(extra[i])
        if r["electrolyser_kw"] > 1.0 and r["hydrogen_kg"] > 1e-3:
            if price <= ctx.price_min + EPS:
                why.append(f"H2: {_period(r['period'], price)}")
            elif surplus > 0:
                why.append("H2: PV surplus")
            else:
                why.append(f"H2 at {fmt_price(price)}, tank {r['tank_kg']:.0f} kg")
        if r["pv_curtailed_kw"] > 0.5:
            if r["export_kw"] >= r["export_limit"] - 0.5:
                why.append(f"curtail: export limit {r['export_limit']:,.0f} kW")
            elif r["export_price"] < 0:
                why.append("curtail: negative export price")
            else:
                why.append("curtail: PV not needed")
        if r["import_kw"] >= r["import_limit"] - 0.5 and r["import_kw"] > 0:
            why.append(f"import at limit {r['import_limit']:,.0f} kW")
        out.append("; ".join(why))
    return out


EvNotes = list[dict[tuple[str, str], set[str]]]
"""Per row: (reason, departure) -> ids of the sessions it applies to."""


def ev_reasons(cfg: SiteConfig, steps: pd.DataFrame, plan: Plan,
               sessions: list[EvSessionEvent], at_peak: np.ndarray | None = None) -> EvNotes:
    """Per step: why each charging EV charges then: the cheapest hours before it leaves, or
    the cheaper hours are already used at full power or held at the import peak."""
    from ems.planning.problem_builder import plugged_steps

    tz = cfg.site.timezone
    n = len(steps)
    prices = steps["price"].to_numpy()
    start = steps.index[0].to_pydatetime()
    chargers = {c.name: c for c in cfg.ev_charger}
    notes: EvNotes = [{} for _ in range(n)]
    for s in sessions:
        key = f"ev:{s.session_id}.charge_kw"
        if key not in plan.series:
            continue
        power = np.asarray(plan.series[key], dtype=float)
        plugged = np.asarray(plugged_steps(s, start, n, cfg.planning.step_minutes))
        where = plugged > 0
        if not where.any():
            continue
        cheapest = prices[where].min()
        cap = chargers[s.charger].max_power_kw * plugged
        depart = pd.Timestamp(s.departure_utc).tz_convert(tz).strftime("%a %H:%M")
        for k in np.flatnonzero(power > 0.1):
            cheaper = where & (prices < prices[k] - EPS)
            if prices[k] <= cheapest + EPS:
                label = "cheapest hours before {depart}"
            elif np.all(power[cheaper] >= cap[cheaper] - 0.05):
                label = "cheaper hours before {depart} already full"
            elif at_peak is not None and np.all(
                    (power >= cap - 0.05)[cheaper] | np.asarray(at_peak, dtype=bool)[cheaper]):
                label = "cheaper hours before {depart} are at the import peak"
            else:
                label = f"due {{depart}}, at {fmt_price(prices[k])}"
            notes[k].setdefault((label, depart), set()).add(s.session_id)
    return notes


def ev_text(notes: dict[tuple[str, str], set[str]], limit: int = 0) -> list[str]:
    """'EV x3: cheapest hours before Wed 07:00'; several departures collapse to 'departure'."""
    groups: dict[str, tuple[set[str], set[str]]] = {}
    for (label, depart), ids in notes.items():
        departs, sessions = groups.setdefault(label, (set(), set()))
        departs.add(depart)
        sessions.update(ids)
    out = []
    for label, (departs, ids) in sorted(groups.items(), key=lambda kv: -len(kv[1][1])):
        text = label.format(depart=next(iter(departs)) if len(departs) == 1 else "departure")
        out.append(f"EV x{len(ids)}: {text}" if len(ids) > 1 else f"EV: {text}")
    return out[:limit] if limit else out


def merge_hourly(per_step: EvNotes, keys: pd.DatetimeIndex, hours: pd.DatetimeIndex) -> EvNotes:
    """Reasons per hour from reasons per step (sessions of the same reason are merged)."""
    by_hour: dict[pd.Timestamp, dict[tuple[str, str], set[str]]] = {h: {} for h in hours}
    for k, notes in zip(keys, per_step, strict=True):
        bucket = by_hour[k]
        for label, ids in notes.items():
            bucket.setdefault(label, set()).update(ids)
    return [by_hour[h] for h in hours]
