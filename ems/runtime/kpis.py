"""Daily and monthly key figures of a running site, integrated from what the meters say.

Each dispatch cycle adds its interval (site time since the previous cycle, booked to the period
the interval began in) at the power measured at its end: energy in kWh, cost in the site
currency (import at the import price minus export at the export price), emissions in kg CO2
(import × intensity), hydrogen in kg, EV energy in kWh.
Periods are local calendar days ("YYYY-MM-DD") and months ("YYYY-MM"). The demand charge is a
monthly figure: each configured charge's price times the highest step-average import within its
windows this month. A missing reading adds nothing (it is never counted as 0 kW) and is counted in
``unmeasured_h``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from ems.config.models import SiteConfig
from ems.runtime.dispatcher import Measured

KPI_NAMES: dict[str, str] = {
    "grid_import_kwh": "Grid import (kWh)",
    "grid_export_kwh": "Grid export (kWh)",
    "energy_cost": "Energy cost (import − export, site currency)",
    "demand_charge": "Demand charge (month only)",
    "total_cost": "Energy cost + demand charge",
    "emissions_kg": "Grid-import emissions by the accounting signal (kgCO2)",
    "emissions_marginal_kg": "Grid-import emissions by the marginal signal (kgCO2)",
    "peak_import_kw": "Highest step-average import (kW)",
    "pv_kwh": "PV output (kWh)",
    "battery_charge_kwh": "Battery charge (kWh)",
    "battery_discharge_kwh": "Battery discharge (kWh)",
    "ev_energy_kwh": "Energy into EVs (kWh)",
    "electrolyser_kwh": "Electrolyser input (kWh)",
    "hydrogen_kg": "Hydrogen produced (kg)",
    "measured_h": "Hours with a grid reading",
    "unmeasured_h": "Hours without a grid reading (not counted)",
}


@dataclass(frozen=True)
class StepSignals:
    """Prices (site currency per kWh) and carbon intensities (g/kWh) in force now."""

    import_price_per_kwh: float
    export_price_per_kwh: float
    carbon_g_per_kwh: float | None
    """By the accounting signal (average when configured)."""
    carbon_marginal_g_per_kwh: float | None = None


@dataclass
class KpiMeter:
    cfg: SiteConfig
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    """Period -> KPI name -> value (what the store holds)."""
    max_gap_s: float = 60.0
    """A longer interval between two cycles (service stopped, loop stalled) is not integrated."""
    _last: datetime | None = None
    _h2_total_kg: dict[str, float] = field(default_factory=dict)
    _changed: set[str] = field(default_factory=set)
    interval_h: float = 0.0
    """Length of the interval the last ``add`` counted (h; 0 when it counted nothing)."""
    hydrogen_kg: dict[str, float] = field(default_factory=dict)
    """Electrolyser -> kg it produced in that interval."""

    def periods(self, at: datetime) -> tuple[str, str]:
        local = at.astimezone(ZoneInfo(self.cfg.site.timezone))
        return local.strftime("%Y-%m-%d"), local.strftime("%Y-%m")

    def add(self, at: datetime, m: Measured, signals: StepSignals | None,
            h2_total_kg: dict[str, float | None] | None = None,
            h2_flow_kg_per_h: dict[str, float | None] | None = None) -> None:
        """Count the interval since the previous call at the power measured now."""
        last, self._last = self._last, at
        totals = h2_total_kg or {}
        produced_by_counter = self._counter_deltas(totals)
        self.interval_h, self.hydrogen_kg = 0.0, {}
        if last is None:
            return
        dt_s = (at - last).total_seconds()
        if dt_s <= 0 or dt_s > self.max_gap_s:
            return
        dt_h = self.interval_h = dt_s / 3600.0
        add: dict[str, float] = {}
        grid = m.grid_net_kw
        if grid is None:
            add["unmeasured_h"] = dt_h
        else:
            imported, exported = max(0.0, grid) * dt_h, max(0.0, -grid) * dt_h
            add.update(grid_import_kwh=imported, grid_export_kwh=exported, measured_h=dt_h)
            if signals is not None:
                cost = imported * signals.import_price_per_kwh - exported * signals.export_price_per_kwh
                add.update(energy_cost=cost, total_cost=cost)
                if signals.carbon_g_per_kwh is not None:
                    add["emissions_kg"] = imported * signals.carbon_g_per_kwh / 1000.0
                if signals.carbon_marginal_g_per_kwh is not None:
                    add["emissions_marginal_kg"] = imported * signals.carbon_marginal_g_per_kwh / 1000.0
        add["pv_kwh"] = sum(max(0.0, v) for v in m.pv_kw.values() if v is not None) * dt_h
        battery = [v for v in m.battery_net_kw.values() if v is not None]
        add["battery_discharge_kwh"] = sum(max(0.0, v) for v in battery) * dt_h
        add["battery_charge_kwh"] = sum(max(0.0, -v) for v in battery) * dt_h
        add["ev_energy_kwh"] = sum(max(0.0, v) for v in m.ev_kw.values() if v is not None) * dt_h
        add["electrolyser_kwh"] = sum(max(0.0, v) for v in m.electrolyser_kw.values()
                                      if v is not None) * dt_h
        flows = h2_flow_kg_per_h or {}
        for e in self.cfg.electrolyser:
            # the device's own counter, else its flow meter, else its power over its kWh per kg
            kg = 0.0
            if e.name in produced_by_counter:
                kg = produced_by_counter[e.name]
            elif (flow := flows.get(e.name)) is not None and math.isfinite(flow):
                kg = max(0.0, flow) * dt_h
            elif (kw := m.electrolyser_kw.get(e.name)) is not None:
                kg = max(0.0, kw) * dt_h / e.kwh_per_kg
            self.hydrogen_kg[e.name] = kg
        add["hydrogen_kg"] = sum(self.hydrogen_kg.values())
        for period in self.periods(last):  # an interval belongs to the day it began in
            self._changed.add(period)
            row = self.values.setdefault(period, {})
            for name, v in add.items():
                row[name] = row.get(name, 0.0) + v

    def note_step_import(self, step_start: datetime, average_import_kw: float,
                         in_demand_window: list[bool]) -> None:
        """A finished plan step's average import (kW): the day's and month's peak, and the
        month's demand charge from each charge whose window holds the step."""
        day, month = self.periods(step_start)
        self._changed.update((day, month))
        for period in (day, month):
            row = self.values.setdefault(period, {})
            row["peak_import_kw"] = max(row.get("peak_import_kw", 0.0), average_import_kw)
        row = self.values[month]
        charges = self.cfg.grid.demand_charges
        for k in range(len(charges)):
            if k < len(in_demand_window) and in_demand_window[k]:
                key = f"demand_peak_{k}_kw"
                row[key] = max(row.get(key, 0.0), average_import_kw)
        demand = sum(row.get(f"demand_peak_{k}_kw", 0.0) * c.price_per_kw for k, c in enumerate(charges))
        row["demand_charge"] = demand
        row["total_cost"] = row.get("energy_cost", 0.0) + demand

    def changed(self) -> dict[str, dict[str, float]]:
        """The rows changed since the last call (what to write to the store now)."""
        out = {p: dict(self.values[p]) for p in sorted(self._changed)}
        self._changed.clear()
        return out

    def _counter_deltas(self, totals: dict[str, float | None]) -> dict[str, float]:
        """kg since the previous call per electrolyser with a running total (a counter that
        goes back, e.g. after a device reset, restarts the count and adds nothing)."""
        out: dict[str, float] = {}
        for name, total in totals.items():
            if total is None:
                self._h2_total_kg.pop(name, None)
                continue
            before = self._h2_total_kg.get(name)
            self._h2_total_kg[name] = total
            if before is not None:
                out[name] = max(0.0, total - before)
        return out
