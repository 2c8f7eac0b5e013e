"""How each simulated device turns its commands into plant requests and shows the plant's state.

A model never touches registers itself: it gets the setpoint fields its commands carry (after
the device watchdog, see :mod:`drivers.sim.site_sim`), adds requests to the plant's
:class:`~drivers.setpoints.Setpoints`, and after each step returns capability values (published
through the profile's mapping) and a few extra point values by point name (published when the
profile has such a point). Units: kW, kWh, A, V, kg; clock times in seconds.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from drivers.modbus.profile import DeviceKind
from drivers.setpoints import Setpoints
from drivers.sim.plant import Plant, StepResult


class Choice(tuple[Any, ...]):
    """Alternative values of one capability field, best first: the first one the profile's
    mapping accepts is published (state names differ between profiles)."""

NOMINAL_VOLTAGE_V = 230.0
NOMINAL_FREQUENCY_HZ = 50.0

Values = dict[str, Any]


class DeviceIO(ABC):
    """What a model may learn about its own registers."""

    @abstractmethod
    def point_value(self, name: str) -> float | str | None:
        """Current decoded value of point ``name`` (None when missing or not in the profile)."""

    @abstractmethod
    def last_client_write(self) -> float | None:
        """Clock time (s) of the last client write to any of the device's command registers."""

    @abstractmethod
    def watchdog_remaining_s(self) -> float | None:
        """Seconds before the most urgent device watchdog falls back (None: no watchdog armed)."""


class DeviceModel(ABC):
    """One device of the site, bound to one plant asset."""

    kind: DeviceKind

    def __init__(self, asset: str) -> None:
        self.asset = asset

    def request(self, fields: Mapping[str, float], sp: Setpoints, plant: Plant, io: DeviceIO,
                now_s: float) -> None:
        """Add this device's requests for the coming step (default: none)."""
        return None

    def advance(self, result: StepResult, plant: Plant, dt_s: float) -> None:
        """Integrate counters over a step that just happened (default: nothing)."""
        return None

    @abstractmethod
    def state(self, result: StepResult, plant: Plant, io: DeviceIO) -> tuple[Values, Values]:
        """(capability values by field, extra point values by point name) after ``result``."""


def _phase_values(power_kw: float, phases: int, voltage_v: float) -> Values:
    """Per-phase voltage, current (A) and power (W) of a balanced load of ``power_kw``."""
    per_phase_w = power_kw * 1000.0 / phases
    current_a = abs(per_phase_w) / voltage_v
    out: Values = {}
    for i in (1, 2, 3):
        live = i <= phases
        out[f"voltage_l{i}_v"] = voltage_v if live else 0.0
        out[f"current_l{i}_a"] = current_a if live else 0.0
        out[f"active_power_l{i}_w"] = per_phase_w if live else 0.0
    out["current_sum_a"] = current_a * phases
    out["frequency_hz"] = NOMINAL_FREQUENCY_HZ
    return out


class MeterModel(DeviceModel):
    """A three-phase meter. ``asset`` "grid" is the site's grid meter (the site sum: import
    positive); otherwise the name of a load it sub-meters."""

    kind: DeviceKind = "meter"

    def __init__(self, asset: str = "grid") -> None:
        super().__init__(asset)
        self.import_kwh = 0.0
        self.export_kwh = 0.0

    def power_net_kw(self, result: StepResult) -> float:
        """Signed power through the meter, kW: positive = import (into the site or the load)."""
        if self.asset == "grid":
            return result.grid_import_kw - result.grid_export_kw
        return result.load_kw.get(self.asset, 0.0)

    def advance(self, result: StepResult, plant: Plant, dt_s: float) -> None:
        p = self.power_net_kw(result)
        self.import_kwh += max(0.0, p) * dt_s / 3600.0
        self.export_kwh += max(0.0, -p) * dt_s / 3600.0

    def state(self, result: StepResult, plant: Plant, io: DeviceIO) -> tuple[Values, Values]:
        p = self.power_net_kw(result)
        phase = _phase_values(p, 3, NOMINAL_VOLTAGE_V)
        values: Values = {
            "power_net_kw": p,
            "import_energy_kwh": self.import_kwh,
            "export_energy_kwh": self.export_kwh,
            "frequency_hz": NOMINAL_FREQUENCY_HZ,
        }
        for i in (1, 2, 3):
            values[f"power_l{i}_net_kw"] = phase[f"active_power_l{i}_w"] / 1000.0
            values[f"voltage_l{i}_v"] = phase[f"voltage_l{i}_v"]
            values[f"current_l{i}_a"] = phase[f"current_l{i}_a"]
        return values, {}


class PvInverterModel(DeviceModel):
    """A PV inverter: output follows the available PV, capped by ``limit_pct`` of ``rated_kw``."""

    kind: DeviceKind = "pv_inverter"

    def __init__(self, asset: str, rated_kw: float) -> None:
        super().__init__(asset)
        self.rated_kw = rated_kw
        self.limit_pct = 100.0
        self.energy_kwh = 0.0

    def request(self, fields: Mapping[str, float], sp: Setpoints, plant: Plant, io: DeviceIO,
                now_s: float) -> None:
        self.limit_pct = min(100.0, max(0.0, fields.get("limit_pct", 100.0)))
        sp.pv_limit_kw[self.asset] = None if self.limit_pct >= 100.0 else self.rated_kw * self.limit_pct / 100

    def advance(self, result: StepResult, plant: Plant, dt_s: float) -> None:
        self.energy_kwh += result.pv_kw.get(self.asset, 0.0) * dt_s / 3600.0

    def state(self, result: StepResult, plant: Plant, io: DeviceIO) -> tuple[Values, Values]:
        return {
            "power_kw": result.pv_kw.get(self.asset, 0.0),
            "energy_kwh": self.energy_kwh,
            "power_limit_pct": self.limit_pct,
        }, {}


class BatteryDeviceModel(DeviceModel):
    """A battery system: ``power_net_kw`` (positive = discharge) goes to the plant's battery,
    which applies its power limits, SOC window and efficiencies and heats its pack."""

    kind: DeviceKind = "battery"

    def __init__(self, asset: str, cell_temperature_spread_c: float = 2.0) -> None:
        super().__init__(asset)
        self.spread_c = cell_temperature_spread_c

    def request(self, fields: Mapping[str, float], sp: Setpoints, plant: Plant, io: DeviceIO,
                now_s: float) -> None:
        sp.battery_net_kw[self.asset] = fields.get("power_net_kw", 0.0)

    def state(self, result: StepResult, plant: Plant, io: DeviceIO) -> tuple[Values, Values]:
        b = plant.batteries[self.asset]
        p = result.battery_net_kw.get(self.asset, 0.0)
        state = Choice(("discharging", "connected") if p > 1e-9 else ("charging", "connected") if p < -1e-9
                       else ("idle", "standby", "connected"))
        return {
            "state": state,
            "power_net_kw": p,
            "soc_pct": 100.0 * b.soc_kwh / b.capacity_kwh,
            "soh_pct": 100.0,
            "cell_temperature_min_c": b.temperature_c - self.spread_c / 2,
            "cell_temperature_max_c": b.temperature_c + self.spread_c / 2,
        }, {"pack_temperature_c": b.temperature_c}


class EvChargerDeviceModel(DeviceModel):
    """An AC charger (one socket): ``current_a`` per phase → kW = A × phases × voltage / 1000,
    limited by the vehicle's own maximum. The watchdog fallback (safe current) arrives as a
    ``current_a`` field like any other value."""

    kind: DeviceKind = "ev_charger"

    def __init__(self, asset: str, phases: int = 3, voltage_v: float = NOMINAL_VOLTAGE_V,
                 safe_current_a: float = 6.0) -> None:
        super().__init__(asset)
        if phases not in (1, 3):
            raise ValueError(f"ev charger {asset}: phases must be 1 or 3, got {phases}")
        self.phases = phases
        self.voltage_v = voltage_v
        self.safe_current_a = safe_current_a
        self.applied_current_a = safe_current_a
        self.total_kwh = 0.0
        self.session_kwh = 0.0
        self._session: str | None = None

    def kw_per_a(self) -> float:
        return self.phases * self.voltage_v / 1000.0

    def request(self, fields: Mapping[str, float], sp: Setpoints, plant: Plant, io: DeviceIO,
                now_s: float) -> None:
        self.applied_current_a = max(0.0, fields.get("current_a", self.safe_current_a))
        sp.ev_kw[self.asset] = self.applied_current_a * self.kw_per_a()

    def advance(self, result: StepResult, plant: Plant, dt_s: float) -> None:
        vehicle = plant.chargers[self.asset].vehicle
        session = None if vehicle is None else vehicle.session_id
        if session != self._session:
            self._session, self.session_kwh = session, 0.0
        kwh = result.ev_kw.get(self.asset, 0.0) * dt_s / 3600.0
        self.total_kwh += kwh
        self.session_kwh += kwh

    def state(self, result: StepResult, plant: Plant, io: DeviceIO) -> tuple[Values, Values]:
        vehicle = plant.chargers[self.asset].vehicle
        p = result.ev_kw.get(self.asset, 0.0)
        state = "A" if vehicle is None else "C2" if p > 1e-9 else "B2"
        remaining = io.watchdog_remaining_s()
        extra = _phase_values(p, self.phases, self.voltage_v)
        extra.update({
            "meter_state": 0x03,
            "availability": 1,
            "safe_current_a": self.safe_current_a,
            "max_current_valid_time_s": 0 if remaining is None else math.ceil(max(0.0, remaining)),
            "setpoint_accounted_for": 0 if remaining is None or remaining <= 0 else 1,
            "charge_phases": self.phases,
        })
        return {
            "state": state,
            "plugged": vehicle is not None,
            "power_kw": p,
            "applied_current_a": self.applied_current_a,
            "session_energy_kwh": self.session_kwh,
            "total_energy_kwh": self.total_kwh,
        }, extra


HALTED, IDLE, STEADY, STANDBY = 0, 2, 3, 4
ELECTROLYSER_STATES = {HALTED: "halted", IDLE: "idle", STEADY: "steady", STANDBY: "standby"}
"""Enapter's electrolyser state codes (input 1200)."""


class ElectrolyserDeviceModel(DeviceModel):
    """An electrolyser with Enapter's state machine.

    - halted: not running (stop command, never started, or heartbeat timeout); standby draw;
    - idle: started and warming up for ``startup_s``; standby draw, no hydrogen;
    - steady: producing at ``production_rate_pct`` of rated power, at least the minimum load;
    - standby: started but paused because the tank is full; resumes when there is room.

    When the heartbeat timeout (point ``heartbeat_timeout``, seconds, 0 = off) is set and no
    command has been written for that long, the device stops (halted) until a command is written.
    """

    kind: DeviceKind = "electrolyser"

    def __init__(self, asset: str, startup_s: float = 60.0, default_rate_pct: float = 100.0) -> None:
        super().__init__(asset)
        self.startup_s = startup_s
        self.default_rate_pct = default_rate_pct
        self.code = HALTED
        self.rate_pct = default_rate_pct
        self.h2_total_kg = 0.0
        self.flow_kg_per_h = 0.0
        self.started_at: float | None = None
        self.heartbeat_expired = False

    @property
    def state_name(self) -> str:
        return ELECTROLYSER_STATES[self.code]

    def request(self, fields: Mapping[str, float], sp: Setpoints, plant: Plant, io: DeviceIO,
                now_s: float) -> None:
        timeout = io.point_value("heartbeat_timeout")
        last = io.last_client_write()
        self.heartbeat_expired = (
            isinstance(timeout, int | float) and timeout > 0 and last is not None and now_s - last > timeout
        )
        run = fields.get("run", 0.0) >= 0.5 and not self.heartbeat_expired
        self.rate_pct = min(100.0, max(0.0, fields.get("production_rate_pct", self.default_rate_pct)))
        if not run:
            self.code, self.started_at = HALTED, None
        elif self.code == HALTED:
            # Warm-up counts from the command that started it.
            self.code, self.started_at = IDLE, now_s if last is None else min(now_s, last)
        if self.code == IDLE and self.started_at is not None and now_s - self.started_at >= self.startup_s:
            self.code = STEADY
        e = plant.electrolysers[self.asset]
        producing = self.code in (STEADY, STANDBY)
        stack_kw = max(e.min_load_kw, self.rate_pct / 100.0 * e.rated_kw)
        sp.electrolyser_kw[self.asset] = stack_kw if producing else 0.0

    def advance(self, result: StepResult, plant: Plant, dt_s: float) -> None:
        kg = result.hydrogen_kg.get(self.asset, 0.0)
        self.h2_total_kg += kg
        self.flow_kg_per_h = kg * 3600.0 / dt_s if dt_s > 0 else 0.0
        if self.code in (STEADY, STANDBY):
            self.code = STEADY if kg > 0 else STANDBY

    def state(self, result: StepResult, plant: Plant, io: DeviceIO) -> tuple[Values, Values]:
        tank = plant.electrolysers[self.asset].tank
        return {
            # The profile maps "state" from the system state or from the electrolyser state.
            "state": Choice(("in operation", self.state_name)),
            "power_kw": result.electrolyser_kw.get(self.asset, 0.0),
            "h2_total_kg": self.h2_total_kg,
            "h2_flow_kg_per_h": self.flow_kg_per_h if self.code == STEADY else math.nan,
            "tank_level_pct": 100.0 * tank.level_kg / tank.capacity_kg,
        }, {"electrolyser_state": self.code, "system_state": 1}
