"""Daily and monthly key figures of a running site, integrated from what the meters say.

Each dispatch cycle adds its interval (site time since the previous cycle, booked to the period
the interval began in) at the powers measured at its end (:class:`~ems.accounting.MeteredPowers`,
from :func:`~ems.accounting.metered_powers`): energy in kWh, cost in the site currency (import at
the import price minus export at the export price), emissions in kg CO2 (import × intensity),
hydrogen in kg, EV energy in kWh; the cost, emissions, demand charge and hydrogen come from
``ems.accounting``, as the what-if's do. Names are those of :data:`ems.accounting.KPI_NAMES`.
Periods are local calendar days ("YYYY-MM-DD") and billing periods ("YYYY-MM"). The demand
charge is a monthly figure: each configured charge's price times the highest step-average
import within its windows this month. A missing reading adds nothing (it is never counted as
0 kW) and is counted in ``unmeasured_h``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from ems.accounting import (
    KPI_NAMES,
    HydrogenCounter,
    MeteredPowers,
    StepSignals,
    billing_period,
    demand_charge,
    demand_peak_name,
    emissions_kg,
    energy_cost,
    raise_peaks,
)
from ems.config.models import SiteConfig

__all__ = ["KPI_NAMES", "KpiMeter", "MeteredPowers", "StepSignals"]


@dataclass
class KpiMeter:
    cfg: SiteConfig
    values: dict[str, dict[str, float]] = field(default_factory=dict)
    """Period -> KPI name -> value (what the store holds)."""
    max_gap_s: float = 60.0
    """A longer interval between two cycles (service stopped, loop stalled) is not integrated."""
    _last: datetime | None = None
    _changed: set[str] = field(default_factory=set)
    interval_h: float = 0.0
    """Length of the interval the last ``add`` counted (h; 0 when it counted nothing)."""
    hydrogen_kg: dict[str, float] = field(default_factory=dict)
    """Electrolyser -> kg it produced in that interval (absent: nothing known)."""
    hydrogen: HydrogenCounter = field(init=False)
    """Counts ``hydrogen_kg`` (keeps each device's running total between calls)."""

    def __post_init__(self) -> None:
        self.hydrogen = HydrogenCounter.for_site(self.cfg)

    def periods(self, at: datetime) -> tuple[str, str]:
        """The local day and the billing period holding ``at``."""
        tz = self.cfg.site.timezone
        return at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d"), billing_period(at, tz)

    def add(self, at: datetime, powers: MeteredPowers, signals: StepSignals | None,
            h2_total_kg: Mapping[str, float | None] | None = None,
            h2_flow_kg_per_h: Mapping[str, float | None] | None = None) -> None:
        """Count the interval since the previous call at the powers measured now (``signals``:
        the prices and intensities for it; None counts no cost or emissions). ``h2_total_kg``,
        ``h2_flow_kg_per_h``: each electrolyser's hydrogen counter and flow meter
        (:func:`~ems.accounting.metered_hydrogen`)."""
        last, self._last = self._last, at
        dt_h = 0.0
        if last is not None:
            dt_s = (at - last).total_seconds()
            if 0 < dt_s <= self.max_gap_s:
                dt_h = dt_s / 3600.0
        self.interval_h = dt_h
        self.hydrogen_kg = self.hydrogen.interval_kg(dt_h, powers.electrolyser_kw, h2_total_kg,
                                                     h2_flow_kg_per_h)
        if last is None or dt_h == 0.0:
            return
        add = self._interval(powers, signals, dt_h)
        add["hydrogen_kg"] = sum(self.hydrogen_kg.values())
        for period in self.periods(last):  # an interval belongs to the day it began in
            self._changed.add(period)
            row = self.values.setdefault(period, {})
            for name, v in add.items():
                row[name] = row.get(name, 0.0) + v

    @staticmethod
    def _interval(m: MeteredPowers, signals: StepSignals | None, dt_h: float) -> dict[str, float]:
        add: dict[str, float] = {}
        grid = m.grid_net_kw
        if grid is None:
            add["unmeasured_h"] = dt_h
        else:
            imported, exported = max(0.0, grid), max(0.0, -grid)
            add.update(grid_import_kwh=imported * dt_h, grid_export_kwh=exported * dt_h, measured_h=dt_h)
            if signals is not None:
                cost = energy_cost(imported, exported, signals.import_price_per_kwh,
                                   signals.export_price_per_kwh, dt_h)
                add.update(energy_cost=cost, total_cost=cost)
                if signals.carbon_g_per_kwh is not None:
                    add["emissions_kg"] = emissions_kg(imported, signals.carbon_g_per_kwh, dt_h)
                if signals.carbon_marginal_g_per_kwh is not None:
                    add["emissions_marginal_kg"] = emissions_kg(imported, signals.carbon_marginal_g_per_kwh,
                                                                dt_h)

        def measured(values: Mapping[str, float | None]) -> list[float]:
            return [v for v in values.values() if v is not None]

        battery = measured(m.battery_net_kw)
        add["pv_kwh"] = sum(max(0.0, v) for v in measured(m.pv_kw)) * dt_h
        add["battery_discharge_kwh"] = sum(max(0.0, v) for v in battery) * dt_h
        add["battery_charge_kwh"] = sum(max(0.0, -v) for v in battery) * dt_h
        add["ev_energy_kwh"] = sum(max(0.0, v) for v in measured(m.ev_kw)) * dt_h
        add["electrolyser_kwh"] = sum(max(0.0, v) for v in measured(m.electrolyser_kw)) * dt_h
        return add

    def note_step_import(self, step_start: datetime, average_import_kw: float,
                         in_demand_window: Sequence[bool]) -> None:
        """A finished plan step's average import (kW): the day's and month's peak, and the
        month's demand charge from each charge whose window holds the step
        (``in_demand_window``: one flag per configured charge)."""
        day, month = self.periods(step_start)
        self._changed.update((day, month))
        for period in (day, month):
            row = self.values.setdefault(period, {})
            row["peak_import_kw"] = max(row.get("peak_import_kw", 0.0), average_import_kw)
        row = self.values[month]
        charges = self.cfg.grid.demand_charges
        names = [demand_peak_name(k) for k in range(len(charges))]
        peaks = raise_peaks([row.get(name, 0.0) for name in names], average_import_kw, in_demand_window)
        row.update(zip(names, peaks, strict=True))
        demand = demand_charge(charges, peaks)
        row["demand_charge"] = demand
        row["total_cost"] = row.get("energy_cost", 0.0) + demand

    def changed(self) -> dict[str, dict[str, float]]:
        """The rows changed since the last call (what to write to the store now)."""
        out = {p: dict(self.values[p]) for p in sorted(self._changed)}
        self._changed.clear()
        return out
