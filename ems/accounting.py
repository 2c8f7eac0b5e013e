"""Accounting shared by the running service's KPIs (``ems.runtime.kpis``) and the what-if's
(``ems.whatif.kpi``): billing periods and their demand peaks, an interval's energy cost and
emissions, the demand charge, hydrogen produced, and one KPI vocabulary. Pure: no I/O, no clock.

Signs and units follow the project's conventions: ``*_net_kw`` grid > 0 importing, battery > 0
discharging; money in the site's currency; carbon intensity g/kWh, emissions kg CO2; hydrogen kg.
A missing value is None and is never counted as 0.
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import pandas as pd

from drivers.capabilities import (
    BatteryReading,
    CapabilityReading,
    ElectrolyserReading,
    EvChargerReading,
    Measured,
    MeterReading,
    PvInverterReading,
)
from ems.config.models import DemandCharge, SiteConfig
from ems.planning.state import SiteState

# ---------------------------------------------------------------------------------------------
# The KPI vocabulary

KPI_NAMES: dict[str, str] = {
    "energy_cost": "Energy cost: import − export (site currency)",
    "demand_charge": "Demand charge (site currency; a billing-period figure)",
    "total_cost": "Energy cost + demand charge (site currency)",
    "emissions_kg": "Grid-import emissions by the accounting signal (kgCO2)",
    "emissions_marginal_kg": "Grid-import emissions by the marginal signal (kgCO2)",
    "self_consumption": "PV self-consumption (fraction of PV output)",
    "peak_import_kw": "Highest step-average import (kW)",
    "grid_import_kwh": "Grid import (kWh)",
    "grid_export_kwh": "Grid export (kWh)",
    "pv_kwh": "PV output (kWh)",
    "pv_curtailed_kwh": "PV curtailed (kWh)",
    "battery_charge_kwh": "Battery charge (kWh)",
    "battery_discharge_kwh": "Battery discharge (kWh)",
    "battery_cycles": "Battery cycles (equivalent full cycles)",
    "ev_energy_kwh": "Energy delivered to EVs (kWh)",
    "ev_shortfall_kwh": "EV energy not delivered by departure (kWh)",
    "electrolyser_kwh": "Electrolyser input (kWh)",
    "hydrogen_kg": "Hydrogen produced (kg)",
    "hydrogen_shortfall_kg": "Hydrogen offtake not met (kg)",
    "electrolyser_starts": "Electrolyser starts (count)",
    "import_limit_exceeded_steps": "Steps over the import limit (count)",
    "measured_h": "Time with a grid reading (h)",
    "unmeasured_h": "Time without a grid reading, not counted (h)",
}
"""Every KPI name either side reports -> its label with its unit. The service's stored rows also
hold ``demand_peak_<k>_kw`` (see :func:`demand_peak_name`)."""

KPI_ALIASES: dict[str, str] = {
    "ev_delivered_kwh": "ev_energy_kwh",
    "hydrogen_produced_kg": "hydrogen_kg",
}
"""Older what-if names (still returned by ``compute_kpis`` for the CLI's table and JSON) -> the
name in :data:`KPI_NAMES`."""


def kpi_name(name: str) -> str:
    """The :data:`KPI_NAMES` name of ``name`` (an alias resolved); KeyError when unknown."""
    canonical = KPI_ALIASES.get(name, name)
    if canonical not in KPI_NAMES and not _is_demand_peak(canonical):
        raise KeyError(f"unknown KPI name {name!r}")
    return canonical


def canonical_kpis(kpis: Mapping[str, float]) -> dict[str, float]:
    """``kpis`` with older names renamed to their :data:`KPI_NAMES` name (to compare the two sides)."""
    return {KPI_ALIASES.get(k, k): v for k, v in kpis.items()}


def demand_peak_name(k: int) -> str:
    """Row name of demand charge k's billing-period peak (kW) in the service's month rows."""
    return f"demand_peak_{k}_kw"


def _is_demand_peak(name: str) -> bool:
    middle = name.removeprefix("demand_peak_").removesuffix("_kw")
    return name.startswith("demand_peak_") and name.endswith("_kw") and middle.isdigit()


# ---------------------------------------------------------------------------------------------
# Billing periods and demand peaks

_PERIOD_FORMAT = "%Y-%m"


def billing_period(at_utc: datetime, timezone: str) -> str:
    """The billing period ("YYYY-MM", the local month) holding the aware instant ``at_utc``."""
    return pd.Timestamp(at_utc).tz_convert(timezone).strftime(_PERIOD_FORMAT)


def billing_periods(step_starts_utc: pd.DatetimeIndex, timezone: str) -> list[str]:
    """:func:`billing_period` of every instant of an aware index (vectorised)."""
    return list(step_starts_utc.tz_convert(timezone).strftime(_PERIOD_FORMAT))


def roll_billing(state: SiteState, at_utc: datetime, timezone: str) -> bool:
    """Start a new billing period when ``at_utc``'s local month is not ``state.billing_period``:
    every demand peak back to 0. True when it rolled."""
    period = billing_period(at_utc, timezone)
    if state.billing_period == period:
        return False
    state.billing_period, state.peak_import_kw, state.demand_peaks_kw = period, 0.0, {}
    return True


def note_step_demand(state: SiteState, step_start_utc: datetime, average_import_kw: float,
                     counted: Sequence[bool], timezone: str) -> None:
    """A finished step's average import (kW) into the state's billing-period peaks: roll the
    period if the step starts in a new one, then raise the peak of each demand charge whose
    window holds the step. ``counted`` has one flag per configured demand charge (in
    ``grid.demand_charges`` order); empty when the site has none, and then ``peak_import_kw``
    is raised (the site's plain highest import)."""
    roll_billing(state, step_start_utc, timezone)
    for k, holds in enumerate(counted):
        if holds:
            state.note_demand(k, average_import_kw)
    if not counted:
        state.peak_import_kw = max(state.peak_import_kw, average_import_kw)


def raise_peaks(peaks_kw: Sequence[float], average_import_kw: float,
                counted: Sequence[bool]) -> list[float]:
    """Each demand charge's peak (kW) after a step: raised to the step's average import where
    ``counted[k]`` (a flag missing from ``counted`` counts as False)."""
    return [max(peak, average_import_kw) if k < len(counted) and counted[k] else peak
            for k, peak in enumerate(peaks_kw)]


def demand_charge(charges: Sequence[DemandCharge], peaks_kw: Sequence[float]) -> float:
    """One billing period's demand charge: each charge's price per kW times its peak (a peak
    missing from ``peaks_kw`` is 0)."""
    return sum(c.price_per_kw * (peaks_kw[k] if k < len(peaks_kw) else 0.0)
               for k, c in enumerate(charges))


def period_demand_peaks(periods: Iterable[str], average_import_kw: Iterable[float],
                        counted: Iterable[Sequence[bool]], n_charges: int) -> dict[str, list[float]]:
    """Billing period -> each demand charge's highest counted step-average import (kW), from
    the steps' periods, average imports and per-charge window flags (in step order)."""
    peaks: dict[str, list[float]] = {}
    for period, kw, flags in zip(periods, average_import_kw, counted, strict=True):
        peaks[period] = raise_peaks(peaks.get(period) or [0.0] * n_charges, kw, flags)
    return peaks


# ---------------------------------------------------------------------------------------------
# An interval's energy cost and emissions

Amount = TypeVar("Amount", float, "pd.Series[float]")


def energy_cost(import_kw: Amount, export_kw: Amount, import_price_per_kwh: Amount,
                export_price_per_kwh: Amount, dt_h: float) -> Amount:
    """Cost (site currency) of ``dt_h`` hours at a constant import and export (both >= 0):
    import × import price − export × export price. Element-wise on Series."""
    return (import_kw * import_price_per_kwh - export_kw * export_price_per_kwh) * dt_h


def emissions_kg(import_kw: Amount, intensity_g_per_kwh: Amount, dt_h: float) -> Amount:
    """Emissions (kg CO2) of ``dt_h`` hours of constant import at an intensity (g/kWh).
    Element-wise on Series."""
    return import_kw * intensity_g_per_kwh * dt_h / 1000.0


def accounting_carbon_kind(cfg: SiteConfig) -> str:
    """The carbon signal emissions are reported with: average (the mix) when configured."""
    return "average" if cfg.grid.carbon_of("average") else cfg.grid.carbon[0].kind


def carbon_columns(cfg: SiteConfig, available: Container[str]) -> tuple[str, str | None]:
    """The input columns (of a step frame or row holding ``available``) that ``emissions_kg``
    and ``emissions_marginal_kg`` are computed with: the accounting signal's own column, else
    ``carbon_g_per_kwh``; the marginal one only when both an average and a marginal signal are
    configured."""
    own = f"carbon_{accounting_carbon_kind(cfg)}_g_per_kwh"
    accounting = own if own in available else "carbon_g_per_kwh"
    marginal = "carbon_marginal_g_per_kwh"
    return accounting, marginal if len(cfg.grid.carbon) == 2 and marginal in available else None


@dataclass(frozen=True)
class StepSignals:
    """Prices (site currency per kWh) and carbon intensities (g/kWh) in force for an interval."""

    import_price_per_kwh: float
    export_price_per_kwh: float
    carbon_g_per_kwh: float | None
    """By the accounting signal (average when configured; see :func:`carbon_columns`)."""
    carbon_marginal_g_per_kwh: float | None = None


def step_signals(cfg: SiteConfig, row: Mapping[str, Any] | pd.Series | None) -> StepSignals | None:
    """The signals of one row of the site's input frame (None without a row or when a price is
    not a finite number; a non-finite intensity is None)."""
    if row is None:
        return None
    prices = _finite(row["import_price_per_kwh"]), _finite(row["export_price_per_kwh"])
    if prices[0] is None or prices[1] is None:
        return None
    accounting, marginal = carbon_columns(cfg, row)
    return StepSignals(prices[0], prices[1], _finite(row.get(accounting)),
                       None if marginal is None else _finite(row.get(marginal)))


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


# ---------------------------------------------------------------------------------------------
# What the meters say

GRID_METER = "grid"
"""Device name of the site's grid meter."""


@dataclass(frozen=True)
class MeteredPowers:
    """Powers measured now (kW), per configured device; None: no good reading (never 0).

    ``grid_net_kw`` > 0 importing; ``battery_net_kw`` > 0 discharging; PV, EV and electrolyser
    powers >= 0."""

    grid_net_kw: float | None = None
    pv_kw: dict[str, float | None] = field(default_factory=dict)
    battery_net_kw: dict[str, float | None] = field(default_factory=dict)
    ev_kw: dict[str, float | None] = field(default_factory=dict)
    electrolyser_kw: dict[str, float | None] = field(default_factory=dict)


def _good(m: Measured[float]) -> float | None:
    """A good, finite measured number, else None."""
    return _finite(m.value) if m.ok else None


def metered_powers(cfg: SiteConfig, readings: Mapping[str, CapabilityReading | None]) -> MeteredPowers:
    """The powers in ``readings`` (device name -> latest reading; absent or None: none) of every
    device in ``cfg``; the grid meter is device :data:`GRID_METER`."""
    # imported here so that the planner's import of billing_period does not load the control layer
    from ems.control.observe import electrolyser_input_kw

    def reading(name: str, kind: type[Any]) -> Any:
        r = readings.get(name)
        return r if isinstance(r, kind) else None

    grid = reading(GRID_METER, MeterReading)
    return MeteredPowers(
        grid_net_kw=None if grid is None else _good(grid.power_net_kw),
        pv_kw={p.name: _good(r.power_kw) if (r := reading(p.name, PvInverterReading)) else None
               for p in cfg.pv},
        battery_net_kw={b.name: _good(r.power_net_kw) if (r := reading(b.name, BatteryReading)) else None
                        for b in cfg.battery},
        ev_kw={c.name: _good(r.power_kw) if (r := reading(c.name, EvChargerReading)) else None
               for c in cfg.ev_charger},
        electrolyser_kw={e.name: electrolyser_input_kw(e, readings.get(e.name)) for e in cfg.electrolyser},
    )


def metered_hydrogen(cfg: SiteConfig, readings: Mapping[str, CapabilityReading | None]
                     ) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """Per electrolyser in ``cfg``: its running hydrogen total (kg) and its hydrogen flow (kg/h)
    from ``readings`` (None: no good reading), the inputs of :meth:`HydrogenCounter.interval_kg`."""
    totals: dict[str, float | None] = {}
    flows: dict[str, float | None] = {}
    for e in cfg.electrolyser:
        r = readings.get(e.name)
        totals[e.name] = _good(r.h2_total_kg) if isinstance(r, ElectrolyserReading) else None
        flows[e.name] = _good(r.h2_flow_kg_per_h) if isinstance(r, ElectrolyserReading) else None
    return totals, flows


@dataclass
class HydrogenCounter:
    """Hydrogen (kg) each electrolyser produced in an interval: the increase of the device's own
    running total since the previous call, else its flow meter (kg/h) times the interval, else
    its electrical input over its kWh per kg. An electrolyser with none of these is left out
    (nothing known, not 0). A total that goes back (a device reset) restarts the count and adds
    nothing for that interval."""

    kwh_per_kg: dict[str, float]
    """Electrolyser -> kWh per kg."""
    _totals_kg: dict[str, float] = field(default_factory=dict)

    @classmethod
    def for_site(cls, cfg: SiteConfig) -> HydrogenCounter:
        return cls({e.name: e.kwh_per_kg for e in cfg.electrolyser})

    def interval_kg(self, dt_h: float, input_kw: Mapping[str, float | None],
                    total_kg: Mapping[str, float | None] | None = None,
                    flow_kg_per_h: Mapping[str, float | None] | None = None) -> dict[str, float]:
        """Electrolyser -> kg produced in the ``dt_h`` hours that end now. Call it at the end of
        every interval, also one that is not counted (``dt_h`` 0: returns {}), so that each
        device total's previous value is the one read at the start of the next interval."""
        by_counter = self._counter_deltas(total_kg or {})
        if dt_h <= 0:
            return {}
        flows = flow_kg_per_h or {}
        out: dict[str, float] = {}
        for name, kwh_per_kg in self.kwh_per_kg.items():
            if name in by_counter:
                out[name] = by_counter[name]
            elif (flow := _finite(flows.get(name))) is not None:
                out[name] = max(0.0, flow) * dt_h
            elif (kw := _finite(input_kw.get(name))) is not None:
                out[name] = max(0.0, kw) * dt_h / kwh_per_kg
        return out

    def _counter_deltas(self, totals: Mapping[str, float | None]) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, raw in totals.items():
            total = _finite(raw)
            if total is None:
                self._totals_kg.pop(name, None)
                continue
            before = self._totals_kg.get(name)
            self._totals_kg[name] = total
            if before is not None:
                out[name] = max(0.0, total - before)
        return out
