"""The site's state as a plan starts from it, estimated from device readings only: battery SOC,
hydrogen tank levels, electrolyser on/off and how long it has been so. Shared by the service
and the what-if, so both plan from what a real controller can know.

Units: kWh, kg, hours; times UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from drivers.capabilities import BatteryReading, CapabilityReading, ElectrolyserReading
from ems.config.models import SiteConfig
from ems.control.observe import value
from ems.planning.state import SiteState


class TankEstimator:
    """Each tank's level (kg): the level an electrolyser feeding it reports, else the last
    estimate plus what the electrolysers produced minus the configured offtake, within
    [0, capacity]. Starts from the config's ``initial_kg`` (or a stored estimate)."""

    def __init__(self, cfg: SiteConfig, start_kg: Mapping[str, float] | None = None) -> None:
        self.cfg = cfg
        self.level_kg: dict[str, float] = {t.name: t.initial_kg for t in cfg.hydrogen_tank}
        self.level_kg.update(start_kg or {})

    def update(self, readings: Mapping[str, CapabilityReading | None], produced_kg: Mapping[str, float],
               offtake_kg: Mapping[str, float]) -> None:
        """One interval: ``produced_kg`` per electrolyser, ``offtake_kg`` per offtake (kg)."""
        for t in self.cfg.hydrogen_tank:
            level = self.level_kg.get(t.name, t.initial_kg)
            measured = None
            for e in self.cfg.electrolyser:
                if e.tank != t.name:
                    continue
                r = readings.get(e.name)
                pct = value(r.tank_level_pct) if isinstance(r, ElectrolyserReading) else None
                if pct is not None:
                    measured = pct / 100.0 * t.capacity_kg
                level += produced_kg.get(e.name, 0.0)
            for off in self.cfg.hydrogen_offtake:
                if off.tank == t.name:
                    level -= offtake_kg.get(off.name, 0.0)
            self.level_kg[t.name] = measured if measured is not None else min(t.capacity_kg, max(0.0, level))


class StateEstimator:
    """Keeps a :class:`SiteState` up to date from readings: battery SOC from each battery's SOC
    reading (kept as it was when missing), electrolyser on (state "steady") and the time of its
    last change, tank levels from a :class:`TankEstimator`."""

    def __init__(self, cfg: SiteConfig, state: SiteState, tanks: TankEstimator) -> None:
        self.cfg = cfg
        self.state = state
        self.tanks = tanks
        self.changed_at: dict[str, datetime] = {}

    def observe(self, readings: Mapping[str, CapabilityReading | None], now: datetime) -> None:
        state = self.state
        for b in self.cfg.battery:
            r = readings.get(b.name)
            soc = value(r.soc_pct) if isinstance(r, BatteryReading) else None
            if soc is not None:
                state.battery_soc_kwh[b.name] = soc / 100.0 * b.capacity_kwh
        for e in self.cfg.electrolyser:
            r = readings.get(e.name)
            running = r.state.value if isinstance(r, ElectrolyserReading) and r.state.ok else None
            if running is None:
                continue
            on = running == "steady"
            if state.electrolyser_on.get(e.name) != on:
                self.changed_at[e.name] = now
            state.electrolyser_on[e.name] = on
        state.tank_kg.update(self.tanks.level_kg)

    def for_plan(self, now: datetime, step_minutes: int) -> SiteState:
        """The state a plan at ``now`` starts from (steps in state counted on the plan grid)."""
        for e in self.cfg.electrolyser:
            since = self.changed_at.get(e.name)
            if since is not None:
                self.state.electrolyser_steps_in_state[e.name] = int(
                    (now - since).total_seconds() // (step_minutes * 60))
        self.state.tank_kg.update(self.tanks.level_kg)
        return self.state
