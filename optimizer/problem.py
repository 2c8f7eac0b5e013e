"""The planning problem: a time grid, asset parameters, signals and initial state.

Everything here is plain data. Per-step sequences have one value per step of the grid.
Powers are kW (average over the step), energies kWh, hydrogen kg, carbon intensity
gCO2/kWh, money in the site's currency. Direction is in the name and values are >= 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum


class ObjectiveMode(StrEnum):
    """How cost and carbon are weighed.

    COST: money only (carbon reported, not priced).
    CARBON_PRICE: money + carbon_price_per_kg x emissions.
    CARBON: emissions only; money breaks ties with a small weight.
    """

    COST = "cost"
    CARBON_PRICE = "carbon_price"
    CARBON = "carbon"


@dataclass(frozen=True)
class TimeGrid:
    """Uniform steps starting at a timezone-aware UTC instant."""

    start_utc: datetime
    step_minutes: int
    n_steps: int

    def __post_init__(self) -> None:
        if self.start_utc.tzinfo is None:
            raise ValueError(f"TimeGrid.start_utc must be timezone-aware, got {self.start_utc!r}")
        if self.step_minutes <= 0 or self.n_steps <= 0:
            raise ValueError(
                f"TimeGrid needs step_minutes > 0 and n_steps > 0, got "
                f"{self.step_minutes} and {self.n_steps}"
            )

    @property
    def step_hours(self) -> float:
        return self.step_minutes / 60.0

    def instants(self) -> list[datetime]:
        """Start instant of every step (UTC)."""
        return [
            self.start_utc + timedelta(minutes=self.step_minutes * k) for k in range(self.n_steps)
        ]


@dataclass(frozen=True)
class Penalties:
    """Prices of soft limits, in money per unit of violation (kept above any real price)."""

    grid_limit_per_kwh: float = 1000.0
    soc_window_per_kwh: float = 500.0
    ev_shortfall_per_kwh: float = 50.0
    hydrogen_shortfall_per_kg: float = 200.0
    tank_window_per_kg: float = 500.0
    load_unserved_per_kwh: float = 5000.0


@dataclass(frozen=True)
class DemandCharge:
    """One demand charge: `price_per_kw` (money per kW, >= 0) times the rise of its own billed
    peak (kW, step-average import over the steps in `window`) above `peak_so_far_kw`."""

    price_per_kw: float
    window: Sequence[bool] | None = None
    """Steps whose import counts toward this charge's peak; None means every step."""
    peak_so_far_kw: float = 0.0
    """This charge's billing-period peak already reached before the horizon (kW)."""
    name: str = "demand"


@dataclass(frozen=True)
class Grid:
    """Grid connection. Limits and prices are per step.

    Demand charges: either the single charge of `demand_charge_per_kw`, `demand_window` and
    `peak_so_far_kw`, or a list `demand_charges` (then leave the single-charge fields at their
    defaults); see `charges()`.
    """

    import_limit_kw: Sequence[float]
    export_limit_kw: Sequence[float]
    import_price_per_kwh: Sequence[float]
    export_price_per_kwh: Sequence[float]
    carbon_intensity_g_per_kwh: Sequence[float]
    demand_charge_per_kw: float = 0.0
    demand_window: Sequence[bool] | None = None
    """Steps whose import counts toward the billed peak; None means every step."""
    peak_so_far_kw: float = 0.0
    """Billing period's peak already reached before this horizon (kW)."""
    name: str = "grid"
    demand_charges: Sequence[DemandCharge] = ()
    """Several demand charges, each with its own peak, rate and peak so far."""

    def charges(self) -> list[DemandCharge]:
        """The demand charges in force: `demand_charges`, or else the single-charge fields
        (one charge, possibly at rate 0)."""
        if self.demand_charges:
            return list(self.demand_charges)
        return [DemandCharge(self.demand_charge_per_kw, self.demand_window, self.peak_so_far_kw)]


@dataclass(frozen=True)
class Pv:
    """PV with a forecast of available power (kW); curtailment is free but never negative."""

    name: str
    available_kw: Sequence[float]
    curtailable: bool = True


@dataclass(frozen=True)
class Load:
    """Inflexible load (kW per step)."""

    name: str
    demand_kw: Sequence[float]


@dataclass(frozen=True)
class Battery:
    """Stationary battery. SOC in kWh; efficiencies are one-way (0..1]."""

    name: str
    capacity_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    initial_soc_kwh: float
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    soc_min_fraction: float = 0.1
    soc_max_fraction: float = 0.9
    degradation_cost_per_kwh: float = 0.0
    """Cost per kWh of throughput (charge + discharge)."""
    terminal_value_per_kwh: float | None = None
    """Value of energy left at the horizon end; None: the horizon's lowest import price."""
    allow_grid_charging: bool = True


@dataclass(frozen=True)
class EvSession:
    """One vehicle's stay at a charger within the horizon.

    `plugged` is the fraction (0..1) of each step the vehicle is connected; its power limits
    scale with it. The energy target is soft: what cannot be delivered by departure is
    reported as shortfall.
    """

    name: str
    charger: str
    plugged: Sequence[float]
    energy_needed_kwh: float
    """Energy still to deliver into the vehicle from the horizon start (kWh)."""
    max_charge_kw: float
    min_charge_kw: float = 0.0
    """Minimum power whenever charging (e.g. 6 A x phases); 0 means no minimum."""
    max_discharge_kw: float = 0.0
    """V2G discharge limit (0: no V2G)."""
    efficiency: float = 0.92
    v2g_reserve_kwh: float = 0.0
    """How far below its arrival energy V2G may take the vehicle (kWh)."""
    hours_plugged_after_horizon: float = 0.0
    """Time the vehicle stays plugged after the horizon ends; energy that time can supply at
    full power is not required within the horizon."""


@dataclass(frozen=True)
class Charger:
    """An EV charging point (descriptive: each session carries its charger's power limits,
    and sessions given to one charger must not overlap in time)."""

    name: str
    max_kw: float


@dataclass(frozen=True)
class Electrolyser:
    """Electrolyser with on/off state. Power is electric kW; production is kg per kWh."""

    name: str
    rated_kw: float
    min_load_fraction: float
    kwh_per_kg: float
    standby_kw: float = 0.0
    startup_cost: float = 0.0
    min_up_steps: int = 1
    min_down_steps: int = 1
    initially_on: bool = False
    steps_in_state: int = 1_000_000
    """How many steps it has been in its current on/off state before the horizon."""
    tank: str = "tank"


@dataclass(frozen=True)
class HydrogenTank:
    """Hydrogen store (kg) with a floor kept for safety/backup."""

    name: str
    capacity_kg: float
    floor_kg: float
    initial_kg: float
    terminal_value_per_kg: float = 0.0
    """Value credited per kg left in the tank at the horizon end (money per kg)."""


@dataclass(frozen=True)
class HydrogenOfftake:
    """Hydrogen demand drawn from a tank (kg per step)."""

    name: str
    demand_kg: Sequence[float]
    tank: str = "tank"


@dataclass(frozen=True)
class Solver:
    """Solver settings for the MILP; the LP relaxation is the fallback."""

    time_limit_s: float = 10.0
    mip_rel_gap: float = 0.001
    relax_integers: bool = False
    threads: int | None = None
    """HiGHS threads (None: HiGHS decides); 1 when several planners share the machine."""
    integer_horizon_steps: int | None = None
    """On/off decisions are binary in the first this-many steps and relaxed after (they are
    re-planned before they happen); None: binary over the whole horizon."""


@dataclass(frozen=True)
class Problem:
    """Everything the optimiser needs for one horizon."""

    grid: TimeGrid
    connection: Grid
    pv: Sequence[Pv] = ()
    loads: Sequence[Load] = ()
    batteries: Sequence[Battery] = ()
    chargers: Sequence[Charger] = ()
    ev_sessions: Sequence[EvSession] = ()
    electrolysers: Sequence[Electrolyser] = ()
    tanks: Sequence[HydrogenTank] = ()
    offtakes: Sequence[HydrogenOfftake] = ()
    objective: ObjectiveMode = ObjectiveMode.COST
    carbon_price_per_kg: float = 0.0
    penalties: Penalties = field(default_factory=Penalties)
    solver: Solver = field(default_factory=Solver)

    def validate(self) -> None:
        """Raise ValueError naming the field and value for malformed data."""
        n = self.grid.n_steps

        def check_len(where: str, seq: Sequence[object]) -> None:
            if len(seq) != n:
                raise ValueError(f"{where}: expected {n} values (one per step), got {len(seq)}")

        def check_nonneg(where: str, seq: Sequence[float]) -> None:
            for k, v in enumerate(seq):
                if not v >= 0.0:  # also rejects NaN
                    raise ValueError(f"{where}[{k}] = {v!r}: must be a number >= 0")

        c = self.connection
        for fname in ("import_limit_kw", "export_limit_kw", "import_price_per_kwh",
                      "export_price_per_kwh", "carbon_intensity_g_per_kwh"):
            seq = getattr(c, fname)
            check_len(f"connection.{fname}", seq)
            if fname.endswith("_kw") or fname.startswith("carbon"):
                check_nonneg(f"connection.{fname}", seq)
            else:
                for k, v in enumerate(seq):
                    if v != v:
                        raise ValueError(f"connection.{fname}[{k}] is NaN")
        if c.demand_window is not None:
            check_len("connection.demand_window", c.demand_window)
        if c.demand_charges and (c.demand_charge_per_kw or c.demand_window is not None or c.peak_so_far_kw):
            raise ValueError("connection.demand_charges: give either the list or the single-charge fields "
                             "(demand_charge_per_kw, demand_window, peak_so_far_kw), not both")
        for k, dc in enumerate(c.demand_charges):
            if dc.window is not None:
                check_len(f"connection.demand_charges[{k}].window", dc.window)
            for fname in ("price_per_kw", "peak_so_far_kw"):
                v = getattr(dc, fname)
                if not v >= 0.0:
                    raise ValueError(f"connection.demand_charges[{k}].{fname} = {v!r}: must be a number >= 0")
        for pv in self.pv:
            check_len(f"pv[{pv.name}].available_kw", pv.available_kw)
            check_nonneg(f"pv[{pv.name}].available_kw", pv.available_kw)
        for ld in self.loads:
            check_len(f"loads[{ld.name}].demand_kw", ld.demand_kw)
            check_nonneg(f"loads[{ld.name}].demand_kw", ld.demand_kw)
        for b in self.batteries:
            if b.capacity_kwh <= 0:
                raise ValueError(f"batteries[{b.name}].capacity_kwh = {b.capacity_kwh}: must be > 0")
            if not 0 < b.charge_efficiency <= 1 or not 0 < b.discharge_efficiency <= 1:
                raise ValueError(f"batteries[{b.name}]: efficiencies must be in (0, 1]")
            if not 0 <= b.soc_min_fraction <= b.soc_max_fraction <= 1:
                raise ValueError(
                    f"batteries[{b.name}]: need 0 <= soc_min_fraction <= soc_max_fraction <= 1, "
                    f"got {b.soc_min_fraction} and {b.soc_max_fraction}"
                )
        charger_names = {ch.name for ch in self.chargers}
        for s in self.ev_sessions:
            check_len(f"ev_sessions[{s.name}].plugged", s.plugged)
            for k, f in enumerate(s.plugged):
                if not 0.0 <= float(f) <= 1.0:
                    raise ValueError(f"ev_sessions[{s.name}].plugged[{k}] = {f!r}: must be in [0, 1]")
            if s.charger not in charger_names:
                raise ValueError(f"ev_sessions[{s.name}].charger = {s.charger!r}: no such charger")
            if s.min_charge_kw > s.max_charge_kw:
                raise ValueError(
                    f"ev_sessions[{s.name}].min_charge_kw = {s.min_charge_kw} exceeds "
                    f"max_charge_kw = {s.max_charge_kw}"
                )
        tank_names = {t.name for t in self.tanks}
        for e in self.electrolysers:
            if e.tank not in tank_names:
                raise ValueError(f"electrolysers[{e.name}].tank = {e.tank!r}: no such tank")
            if not 0 <= e.min_load_fraction <= 1:
                raise ValueError(
                    f"electrolysers[{e.name}].min_load_fraction = {e.min_load_fraction}: "
                    "must be in [0, 1]"
                )
            if e.kwh_per_kg <= 0:
                raise ValueError(f"electrolysers[{e.name}].kwh_per_kg = {e.kwh_per_kg}: must be > 0")
        for o in self.offtakes:
            check_len(f"offtakes[{o.name}].demand_kg", o.demand_kg)
            check_nonneg(f"offtakes[{o.name}].demand_kg", o.demand_kg)
            if o.tank not in tank_names:
                raise ValueError(f"offtakes[{o.name}].tank = {o.tank!r}: no such tank")
