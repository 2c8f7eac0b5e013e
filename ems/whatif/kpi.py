"""Key figures of a simulated period, computed from its per-step record.

Energy cost, demand charge and emissions come from ``ems.accounting``, as the running service's
do; the names are those of :data:`ems.accounting.KPI_NAMES`, except ``ev_delivered_kwh`` and
``hydrogen_produced_kg``, kept for the CLI's table and JSON (see ``KPI_ALIASES``)."""

from __future__ import annotations

import pandas as pd

from ems.accounting import (
    accounting_carbon_kind,
    billing_periods,
    carbon_columns,
    demand_charge,
    emissions_kg,
    energy_cost,
    period_demand_peaks,
)
from ems.config.models import SiteConfig
from ems.inputs.site_inputs import demand_window_column

__all__ = ["KPI_LABELS", "accounting_carbon_kind", "compute_kpis", "demand_charge_kpi", "emissions_kpis"]

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
"""The CLI table's short label of each KPI ``compute_kpis`` returns, in table order (money
labels get the currency appended there). Every key is a name of ``ems.accounting.KPI_NAMES`` or
one of its ``KPI_ALIASES``."""


def compute_kpis(steps: pd.DataFrame, cfg: SiteConfig, ev_delivered_kwh: float,
                 ev_shortfall_kwh: float, battery_throughput_kwh: float,
                 electrolyser_starts: int) -> dict[str, float]:
    dt = cfg.planning.step_minutes / 60.0
    cost = float(energy_cost(steps["import_kw"], steps["export_kw"], steps["import_price_per_kwh"],
                             steps["export_price_per_kwh"], dt).sum())
    demand = demand_charge_kpi(steps, cfg)
    pv = float(steps["pv_kw"].sum() * dt)
    exported = float(steps["export_kw"].sum() * dt)
    capacity = sum(b.capacity_kwh for b in cfg.battery)
    return {
        "energy_cost": cost,
        "demand_charge": demand,
        "total_cost": cost + demand,
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
        return float(emissions_kg(steps["import_kw"], steps[column], dt).sum())

    accounting, marginal = carbon_columns(cfg, steps)
    out = {"emissions_kg": kg(accounting)}
    if marginal is not None:
        out["emissions_marginal_kg"] = kg(marginal)
    return out


def demand_charge_kpi(steps: pd.DataFrame, cfg: SiteConfig) -> float:
    """Sum over the billing periods (local months) of the steps of each configured demand
    charge's price times its highest step import within its windows (``demand_window*``)."""
    charges = cfg.grid.demand_charges
    if not charges:
        return 0.0
    windows = [steps[demand_window_column(k)].astype(bool).tolist() for k in range(len(charges))]
    peaks = period_demand_peaks(billing_periods(pd.DatetimeIndex(steps.index), cfg.site.timezone),
                                steps["import_kw"].tolist(), zip(*windows, strict=True), len(charges))
    return sum(demand_charge(charges, p) for p in peaks.values())
