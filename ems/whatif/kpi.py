"""Key figures of a simulated period, computed from its per-step record."""

from __future__ import annotations

import pandas as pd

from ems.config.models import SiteConfig
from ems.inputs.site_inputs import demand_window_column

KPI_LABELS: dict[str, str] = {
    "energy_cost": "Energy cost",
    "demand_charge": "Demand charge",
    "total_cost": "Total cost",
    "emissions_kg": "Emissions (kgCO2)",
    "emissions_marginal_kg": "Marginal emissions (kgCO2)",
    "self_consumption": "PV self-consumption",
    "peak_import_kw": "Peak import (kW)",
    "grid_import_kwh": "Grid import (kWh)",
    "grid_export_kwh": "Grid export (kWh)",
    "pv_curtailed_kwh": "PV curtailed (kWh)",
    "battery_cycles": "Battery cycles (equiv. full)",
    "ev_delivered_kwh": "EV energy delivered (kWh)",
    "ev_shortfall_kwh": "EV shortfall (kWh)",
    "hydrogen_produced_kg": "Hydrogen produced (kg)",
    "hydrogen_shortfall_kg": "Hydrogen shortfall (kg)",
    "electrolyser_starts": "Electrolyser starts",
    "import_limit_exceeded_steps": "Steps over import limit",
}


def compute_kpis(steps: pd.DataFrame, cfg: SiteConfig, ev_delivered_kwh: float,
                 ev_shortfall_kwh: float, battery_throughput_kwh: float,
                 electrolyser_starts: int) -> dict[str, float]:
    dt = cfg.planning.step_minutes / 60.0
    energy_cost = float(((steps["import_kw"] * steps["import_price_per_kwh"]
                          - steps["export_kw"] * steps["export_price_per_kwh"]) * dt).sum())
    demand = 0.0
    local_month = steps.index.tz_convert(cfg.site.timezone).strftime("%Y-%m")
    for k, dc in enumerate(cfg.grid.demand_charges):  # each billed on its own monthly peak
        counted = steps["import_kw"].where(steps[demand_window_column(k)], 0.0)
        demand += float(counted.groupby(local_month).max().sum() * dc.price_per_kw)
    pv = float(steps["pv_kw"].sum() * dt)
    exported = float(steps["export_kw"].sum() * dt)
    capacity = sum(b.capacity_kwh for b in cfg.battery)
    return {
        "energy_cost": energy_cost,
        "demand_charge": demand,
        "total_cost": energy_cost + demand,
        **emissions_kpis(steps, cfg),
        "self_consumption": (max(0.0, pv - exported) / pv) if pv > 0 else 0.0,
        "peak_import_kw": float(steps["import_kw"].max()),
        "grid_import_kwh": float(steps["import_kw"].sum() * dt),
        "grid_export_kwh": exported,
        "pv_curtailed_kwh": float(steps["pv_curtailed_kw"].sum() * dt),
        "battery_cycles": battery_throughput_kwh / (2 * capacity) if capacity else 0.0,
        "ev_delivered_kwh": ev_delivered_kwh,
        "ev_shortfall_kwh": ev_shortfall_kwh,
        "hydrogen_produced_kg": float(steps["hydrogen_kg"].sum()),
        "hydrogen_shortfall_kg": float(steps["hydrogen_unmet_kg"].sum()),
        "electrolyser_starts": float(electrolyser_starts),
        "import_limit_exceeded_steps": float((steps["import_kw"] > steps["import_limit_kw"] + 1e-6).sum()),
    }


def emissions_kpis(steps: pd.DataFrame, cfg: SiteConfig) -> dict[str, float]:
    """Grid-import emissions (kg CO2): ``emissions_kg`` by the accounting signal (average when
    configured, else the only one; see ``accounting_carbon_kind``), and ``emissions_marginal_kg``
    as well when both an average and a marginal signal are configured."""
    dt = cfg.planning.step_minutes / 60.0

    def kg(column: str) -> float:
        return float((steps["import_kw"] * steps[column] * dt / 1000.0).sum())

    kind = accounting_carbon_kind(cfg)
    column = f"carbon_{kind}_g_per_kwh"
    out = {"emissions_kg": kg(column if column in steps else "carbon_g_per_kwh")}
    if len(cfg.grid.carbon) == 2 and "carbon_marginal_g_per_kwh" in steps:
        out["emissions_marginal_kg"] = kg("carbon_marginal_g_per_kwh")
    return out


def accounting_carbon_kind(cfg: SiteConfig) -> str:
    """The carbon signal emissions are reported with: average (the mix) when configured."""
    return "average" if cfg.grid.carbon_of("average") else cfg.grid.carbon[0].kind
