"""The plant site: the simulators' plant and device models stepped in-process, seen only through
the capability readings each device's profile gives, and commanded through the same setpoint →
command mapping as the Modbus site. The what-if runs the controller on it.

Each device publishes its state as the simulators do (the device model's capability values
mapped to the profile's points, :func:`drivers.capabilities.from_capability`) and a read maps
those point values back (:func:`drivers.capabilities.to_capability`), so a field the device does
not report is missing for the controller here as on site. Register encoding is skipped (values
keep full precision). Commands go through the profile's command mapping and the device models'
watchdog fallbacks. Assets without a ``device`` table get the default profile of their kind.

Time is the plant's own: :meth:`PlantSite.advance` steps it; nothing here reads a clock.
Units: kW, kWh, kg; seconds of plant time.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from drivers.capabilities import (
    MAPPINGS,
    CapabilityReading,
    Setpoint,
    from_capability,
    from_commands,
    to_capability,
    to_commands,
)
from drivers.modbus.device import PollResult
from drivers.modbus.profile import Profile, Reading
from drivers.setpoints import Setpoints
from drivers.sim.device_models import (
    BatteryDeviceModel,
    Choice,
    DeviceIO,
    DeviceModel,
    ElectrolyserDeviceModel,
    EvChargerDeviceModel,
    MeterModel,
    PvInverterModel,
)
from drivers.sim.device_profiles import ProfileUnavailable, profile_for_device
from drivers.sim.plant import (
    BatteryModel,
    ElectrolyserModel,
    EvChargerModel,
    Plant,
    StepResult,
    TankModel,
    Vehicle,
)
from drivers.sim.site_sim import SimDevice, SiteSeries, VehicleSession
from ems.config.models import Device, SiteConfig
from ems.config.site_devices import SiteDevice, site_devices
from ems.site.commands import DEFAULT_ELECTROLYSER_PROFILE, setpoint_for, within_device_limits

DEFAULT_PROFILES: dict[str, str] = {
    "grid": "eastron_sdm630",
    "load": "eastron_sdm630",
    "pv": "sunspec_inverter",
    "battery": "sunspec_battery",
    "ev_charger": "alfen_ng9xx",
    "electrolyser": DEFAULT_ELECTROLYSER_PROFILE,
}
"""Profile of an asset without a ``device`` table, by config section."""


def plant_from_config(cfg: SiteConfig) -> Plant:
    """The site's physics (the model the device simulators share)."""
    tanks = {t.name: TankModel(t.name, t.capacity_kg, t.initial_kg) for t in cfg.hydrogen_tank}
    return Plant(
        batteries={
            b.name: BatteryModel(
                name=b.name, capacity_kwh=b.capacity_kwh, max_charge_kw=b.max_charge_kw,
                max_discharge_kw=b.max_discharge_kw, charge_efficiency=b.charge_efficiency,
                discharge_efficiency=b.discharge_efficiency,
                soc_kwh=b.initial_soc_fraction * b.capacity_kwh,
                soc_min_kwh=b.soc_min_fraction * b.capacity_kwh,
                soc_max_kwh=b.soc_max_fraction * b.capacity_kwh,
            )
            for b in cfg.battery
        },
        chargers={c.name: EvChargerModel(c.name, c.max_power_kw, c.min_power_kw, c.efficiency)
                  for c in cfg.ev_charger},
        electrolysers={
            e.name: ElectrolyserModel(
                name=e.name, rated_kw=e.rated_kw, min_load_kw=e.min_load_fraction * e.rated_kw,
                kwh_per_kg=e.kwh_per_kg, standby_kw=e.standby_kw, tank=tanks[e.tank],
            )
            for e in cfg.electrolyser
        },
        tanks=tanks,
        offtake_tank={o.name: o.tank for o in cfg.hydrogen_offtake},
    )


def device_model(d: SiteDevice) -> DeviceModel:
    """The simulated device of a site device: its state published as that device would."""
    a = d.asset
    if d.section in ("grid", "load"):
        return MeterModel(d.name)
    if d.section == "pv":
        return PvInverterModel(a.name, rated_kw=a.kwp)
    if d.section == "battery":
        return BatteryDeviceModel(a.name)
    if d.section == "ev_charger":
        safe = a.min_current_a if a.min_current_a else 6.0
        return EvChargerDeviceModel(a.name, a.phases, a.voltage_v, safe_current_a=safe)
    return ElectrolyserDeviceModel(a.name)


def sim_devices(cfg: SiteConfig, every_asset: bool = False) -> list[SimDevice]:
    """One simulated device per configured device; with ``every_asset``, assets without a
    ``device`` table too (default profile of their kind, no address)."""
    devices = [SimDevice(d.name, d.device.profile, device_model(d), d.device.host, d.device.port,
                         d.device.unit_id) for d in site_devices(cfg)]
    if every_asset:
        have = {d.name for d in devices}
        for d in _assets_without_device(cfg):
            if d.name not in have:
                devices.append(SimDevice(d.name, d.device.profile, device_model(d)))
    return devices


def _assets_without_device(cfg: SiteConfig) -> list[SiteDevice]:
    out: list[SiteDevice] = []
    if cfg.grid.device is None:
        out.append(SiteDevice("grid", "grid", Device(profile=DEFAULT_PROFILES["grid"]), cfg.grid))
    groups: list[tuple[str, Sequence[Any]]] = [("pv", cfg.pv), ("battery", cfg.battery),
                                               ("ev_charger", cfg.ev_charger),
                                               ("electrolyser", cfg.electrolyser)]
    for section, assets in groups:
        out += [SiteDevice(a.name, section, Device(profile=DEFAULT_PROFILES[section]), a)
                for a in assets if a.device is None]
    return out


class _Device(DeviceIO):
    """One simulated device, its commands and state kept as values (no register image)."""

    def __init__(self, name: str, profile: Profile, model: DeviceModel, section: str, asset: Any) -> None:
        self.name = name
        self.profile = profile
        self.model = model
        self.section = section
        self.asset = asset
        self.commands: dict[str, float] = {}
        self.written_at: dict[str, float] = {}
        self.now_s = 0.0
        self.points: dict[str, float | str] = {}
        """Point values last published (what a poll would decode)."""
        self.mapped = sorted({n for src in MAPPINGS[profile.name].values()
                              for n in (src.point, src.minus_point) if n is not None})
        """The points a capability reading is made from."""

    # -- DeviceIO --

    def point_value(self, name: str) -> float | str | None:
        return self.commands.get(name, self.points.get(name))

    def last_client_write(self) -> float | None:
        return max(self.written_at.values()) if self.written_at else None

    def watchdog_remaining_s(self) -> float | None:
        remaining = [c.watchdog_s - (self.now_s - self.written_at[n])
                     for n, c in self.profile.commands.items()
                     if c.watchdog_s is not None and n in self.written_at]
        return min(remaining) if remaining else None

    # -- commands and state --

    def write(self, setpoint: Setpoint, now_s: float) -> str | None:
        """Take the setpoint's commands (each time: a keep-alive too); the error, if refused."""
        try:
            commands = to_commands(self.profile, within_device_limits(self.profile, setpoint))
        except ValueError as exc:
            return str(exc)
        for name, value in commands.items():
            self.commands[name] = value
            self.written_at[name] = now_s
        return None

    def command_fields(self) -> dict[str, float]:
        """Setpoint fields in force: commands written, or a lapsed watchdog's fallback."""
        values: dict[str, float] = {}
        for name, c in self.profile.commands.items():
            last = self.written_at.get(name)
            if c.watchdog_s is not None and (last is None or self.now_s - last > c.watchdog_s):
                fallback = c.fallback_value
                if c.fallback_point is not None:
                    point = self.points.get(c.fallback_point)
                    fallback = float(point) if isinstance(point, int | float) else None
                if fallback is not None:
                    values[name] = fallback
            elif last is not None:
                values[name] = self.commands[name]
        return from_commands(self.profile, values)

    def publish(self, capability: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
        points: dict[str, float | str] = {}
        mapping = MAPPINGS[self.profile.name]
        for field_name, value in capability.items():
            if field_name not in mapping:
                continue
            for option in value if isinstance(value, Choice) else (value,):
                try:
                    points.update(from_capability(self.profile, {field_name: option}))
                    break
                except (KeyError, ValueError, TypeError):
                    continue
        for name, value in extra.items():
            if name in self.profile.points and name not in points and value is not None:
                points[name] = value
        self.points = points

    def read(self, at: datetime) -> CapabilityReading:
        points = self.profile.points
        polled: dict[str, Reading] = {}
        for name in self.mapped:
            v = self.commands.get(name, self.points.get(name))
            polled[name] = Reading(None, points[name].unit, "not published") if v is None \
                else Reading(v, points[name].unit, None)
        return to_capability(self.profile, PollResult(polled, at))


class PlantSite:
    """A site whose devices are in-process simulators on one plant (see the module docstring).

    ``series`` gives PV available, load and hydrogen offtake at any UTC time; ``sessions`` the
    vehicles that come and go; ``start_utc`` the plant's time zero."""

    def __init__(self, cfg: SiteConfig, series: SiteSeries, start_utc: datetime,
                 sessions: Sequence[VehicleSession] = (), control_s: float = 60.0) -> None:
        self.cfg = cfg
        self.control_s = control_s
        """Vehicles come and go on this grid (s): one is plugged in for a step when it arrives
        before the step ends and leaves after it (a controller deciding every ``control_s`` sees
        it from the step it arrives in, as one reacting within seconds would)."""
        self.series = series
        self.start_utc = start_utc
        self.t_s = 0.0
        self.plant = plant_from_config(cfg)
        self.devices: dict[str, _Device] = {}
        for d in site_devices(cfg) + _assets_without_device(cfg):
            if d.name in self.devices:
                continue
            try:
                profile, _ = profile_for_device(d.device.profile)
            except ProfileUnavailable as exc:
                raise ValueError(f"device {d.name!r}: profile: {exc}") from None
            self.devices[d.name] = _Device(d.name, profile, device_model(d), d.section, d.asset)
        self.sessions: dict[str, list[VehicleSession]] = {}
        for s in sorted(sessions, key=lambda s: s.arrival_utc):
            self.sessions.setdefault(s.charger, []).append(s)
        self.delivered_kwh: dict[str, float] = {}
        """Session id -> energy the vehicle took (kWh; the plant's truth, for the what-if's
        figures, never for the controller)."""
        self.write_errors: dict[str, str] = {}
        """Device -> why its last setpoint was refused (cleared by a good write)."""
        self.show_now()

    @property
    def time_utc(self) -> datetime:
        return self.start_utc + timedelta(seconds=self.t_s)

    def readings(self) -> dict[str, CapabilityReading | None]:
        """Every device's reading now (a load's sub-meter only where the controller uses it: it
        does not)."""
        at = self.time_utc
        return {name: d.read(at) for name, d in self.devices.items() if d.section != "load"}

    def apply(self, battery_net_kw: Mapping[str, float], ev_kw: Mapping[str, float],
              electrolyser_kw: Mapping[str, float], pv_limit_kw: Mapping[str, float | None]) -> None:
        """Write each asset's value (kW; PV limit None = released) to its device."""
        for section, values in (("battery", battery_net_kw), ("ev_charger", ev_kw),
                                ("electrolyser", electrolyser_kw), ("pv", pv_limit_kw)):
            for name, value in values.items():
                device = self.devices.get(name)
                setpoint = None if device is None else setpoint_for(section, device.asset, value)
                if device is None or setpoint is None:
                    continue
                error = device.write(setpoint, self.t_s)
                if error is None:
                    self.write_errors.pop(name, None)
                else:
                    self.write_errors[name] = error

    def show_now(self) -> None:
        """Publish what the devices would show at this instant with the site's present PV, load
        and vehicles (after the series stepped), without moving the plant: a controller that
        reacts within seconds sees a load step before it acts on it."""
        self._update_vehicles(self.time_utc)
        self.last_result = self._step(1.0, preview=True)

    def advance(self, seconds: float) -> StepResult:
        """Step the plant ``seconds`` forward (one step) and publish every device's state."""
        self.last_result = self._step(seconds)
        self.t_s += seconds
        for name in self._update_vehicles(self.time_utc):
            d = self.devices.get(name)
            if d is not None:  # a vehicle came or went: its charger shows it before the next step
                d.publish(*d.model.state(self.last_result, self.plant, d))
        return self.last_result

    def _step(self, seconds: float, preview: bool = False) -> StepResult:
        at = self.time_utc
        plant = copy.deepcopy(self.plant) if preview else self.plant
        sp = Setpoints()
        end_s = self.t_s + seconds
        for d in self.devices.values():
            d.now_s = end_s
            d.model.request(d.command_fields(), sp, plant, d, end_s)
        dt_h = seconds / 3600.0
        offtake = {n: kg_h * dt_h for n, kg_h in self.series.offtake_kg_per_h(at).items()}
        result = plant.step(dt_h, self.series.pv_available_kw(at), self.series.load_kw(at), offtake, sp)
        for d in self.devices.values():
            if not preview:
                d.model.advance(result, plant, seconds)
            d.publish(*d.model.state(result, plant, d))
        return result

    def _update_vehicles(self, at: datetime) -> list[str]:
        """Plug in and out the vehicles of the step starting at ``at``; the chargers that changed."""
        changed = []
        step_end = at + timedelta(seconds=self.control_s)
        for name, sessions in self.sessions.items():
            charger = self.plant.chargers[name]
            active = next((s for s in sessions if s.arrival_utc < step_end <= s.departure_utc), None)
            vehicle = charger.vehicle
            if vehicle is not None and (active is None or active.session_id != vehicle.session_id):
                self.delivered_kwh[vehicle.session_id] = vehicle.delivered_kwh
                charger.vehicle = None
                changed.append(name)
            if active is not None and charger.vehicle is None:
                charger.vehicle = Vehicle(active.session_id, active.energy_kwh,
                                          self.delivered_kwh.get(active.session_id, 0.0), active.max_kw)
                changed.append(name)
            while sessions and sessions[0].departure_utc < step_end:
                sessions.pop(0)  # past sessions are not looked at again
        return changed

    def finish(self) -> None:
        """Record the energy of vehicles still plugged in."""
        for c in self.plant.chargers.values():
            if c.vehicle is not None:
                self.delivered_kwh[c.vehicle.session_id] = c.vehicle.delivered_kwh


def vehicle_sessions(events: Sequence[Any], shift: timedelta = timedelta(0)) -> list[VehicleSession]:
    """Vehicle sessions for the plant from the inputs' EV session events."""
    return [VehicleSession(s.charger, s.session_id, s.arrival_utc + shift, s.departure_utc + shift,
                           s.energy_kwh) for s in events]
