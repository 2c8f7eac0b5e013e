"""What the controller knows at one instant: a snapshot of device readings, and the site values
the control rules need, derived from it once per cycle.

Signs: grid net kW > 0 importing; battery net kW > 0 discharging; EV and electrolyser kW >= 0
consumed. A value the devices do not report is None (never 0): the rules that need it say so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from drivers.capabilities import (
    BatteryReading,
    CapabilityReading,
    ElectrolyserReading,
    EvChargerReading,
    Measured,
    MeterReading,
    PvInverterReading,
)
from drivers.setpoints import Setpoints
from ems.config.models import ElectrolyserConfig, SiteConfig

GRID_METER = "grid"
"""Device name of the site's grid meter (the config's ``grid.device``)."""


@dataclass(frozen=True)
class Snapshot:
    """One control cycle's view of the site, built once per cycle.

    ``readings``: the latest capability reading per device name (None or absent: no reading);
    each field is a :class:`~drivers.capabilities.Measured` with its value, UTC timestamp,
    quality and missing reason. ``reading_time_utc`` is "now" on the clock those timestamps use
    (the device layer's; the guard judges staleness on it). ``tank_kg``: the site's estimate of
    each hydrogen tank's level (kg; None when unknown)."""

    time_utc: datetime
    readings: Mapping[str, CapabilityReading | None]
    reading_time_utc: datetime
    tank_kg: Mapping[str, float | None] = field(default_factory=dict)

    def reading(self, name: str) -> CapabilityReading | None:
        return self.readings.get(name)


def value(m: Measured[float]) -> float | None:
    """A good, finite measured number, else None."""
    if not m.ok or m.value is None:
        return None
    v = float(m.value)
    return v if math.isfinite(v) else None


def electrolyser_input_kw(cfg: ElectrolyserConfig, reading: CapabilityReading | None) -> float | None:
    """Electrical input of an electrolyser (kW): its power reading; else, for a device with no
    power point (Enapter), its hydrogen flow times the configured kWh per kg while it produces,
    its standby draw while idle or in standby, 0 when halted; None when nothing is known."""
    if not isinstance(reading, ElectrolyserReading):
        return None
    power = value(reading.power_kw)
    if power is not None:
        return power
    state = reading.state.value if reading.state.ok else None
    flow = value(reading.h2_flow_kg_per_h)
    if flow is not None and state not in ("idle", "standby", "halted"):
        return max(0.0, flow) * cfg.kwh_per_kg
    if state == "halted":
        return 0.0
    if state in ("idle", "standby"):
        return cfg.standby_kw
    return None


@dataclass
class Observed:
    """The values the control rules use, from one snapshot (None: not reported).

    ``*_now_kw`` hold each asset's present power: its reading, else the value it was last told
    (``assumed`` names those), else None."""

    grid_net_kw: float | None
    battery_now_kw: dict[str, float | None]
    battery_soc_fraction: dict[str, float | None]
    ev_now_kw: dict[str, float | None]
    plugged: dict[str, bool | None]
    electrolyser_now_kw: dict[str, float | None]
    tank_fraction: dict[str, float | None]
    """Electrolyser -> fill (0..1) of the tank it feeds: its own level reading, else the site's
    estimate."""
    pv_kw: dict[str, float | None]
    assumed: set[str] = field(default_factory=set)

    def stored_kwh(self, cfg: SiteConfig) -> float | None:
        """Energy in the batteries by their SOC readings (kWh); None when one is missing."""
        total = 0.0
        for b in cfg.battery:
            soc = self.battery_soc_fraction.get(b.name)
            if soc is None:
                return None
            total += soc * b.capacity_kwh
        return total


def observe(cfg: SiteConfig, snap: Snapshot, last: Setpoints | None = None) -> Observed:
    """The control values of ``snap``; ``last`` (the previous cycle's setpoints) stands in for a
    missing power reading."""
    told = last or Setpoints()
    assumed: set[str] = set()

    def now(name: str, measured: float | None, last_told: Mapping[str, float] | None) -> float | None:
        if measured is not None:
            return measured
        if last_told is not None and name in last_told:
            assumed.add(name)
            return last_told[name]
        return None

    grid = snap.reading(GRID_METER)
    obs = Observed(
        grid_net_kw=value(grid.power_net_kw) if isinstance(grid, MeterReading) else None,
        battery_now_kw={}, battery_soc_fraction={}, ev_now_kw={}, plugged={},
        electrolyser_now_kw={}, tank_fraction={}, pv_kw={}, assumed=assumed)
    for b in cfg.battery:
        r = snap.reading(b.name)
        ok = isinstance(r, BatteryReading)
        power = value(r.power_net_kw) if isinstance(r, BatteryReading) else None
        obs.battery_now_kw[b.name] = now(b.name, power, told.battery_net_kw)
        soc = value(r.soc_pct) if isinstance(r, BatteryReading) else None
        obs.battery_soc_fraction[b.name] = soc / 100.0 if ok and soc is not None else None
    for c in cfg.ev_charger:
        r = snap.reading(c.name)
        power = value(r.power_kw) if isinstance(r, EvChargerReading) else None
        obs.ev_now_kw[c.name] = now(c.name, power, told.ev_kw)
        plugged = r.plugged.value if isinstance(r, EvChargerReading) and r.plugged.ok else None
        obs.plugged[c.name] = None if plugged is None else bool(plugged)
    tanks = {t.name: t for t in cfg.hydrogen_tank}
    for e in cfg.electrolyser:
        r = snap.reading(e.name)
        measured = electrolyser_input_kw(e, r)
        obs.electrolyser_now_kw[e.name] = now(e.name, measured, told.electrolyser_kw)
        level = value(r.tank_level_pct) if isinstance(r, ElectrolyserReading) else None
        tank = tanks.get(e.tank)
        estimate = snap.tank_kg.get(e.tank)
        if level is not None:
            obs.tank_fraction[e.name] = level / 100.0
        elif tank is not None and estimate is not None:
            obs.tank_fraction[e.name] = estimate / tank.capacity_kg
        else:
            obs.tank_fraction[e.name] = None
    for p in cfg.pv:
        r = snap.reading(p.name)
        obs.pv_kw[p.name] = value(r.power_kw) if isinstance(r, PvInverterReading) else None
    return obs
