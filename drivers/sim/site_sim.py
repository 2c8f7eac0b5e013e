"""A simulated site: one plant model, one clock, one Modbus server per device.

Each :meth:`SiteSimulator.step` reads the command registers every server holds (a command with a
device watchdog that was not written for ``watchdog_s`` takes its fallback; a command without one
that no client has written has no effect), turns them into plant requests through the device
models, steps the plant from the last step to the clock's present, and publishes every device's
state in its registers. The grid meter shows the plant's site sum, so it agrees with the devices.

Units: kW, kWh, kg; the clock is in seconds of simulated time, mapped onto UTC by ``start_utc``.
"""

from __future__ import annotations

import asyncio
import copy
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from drivers.capabilities import COMMAND_MAPPINGS, command_sources, from_capability, from_commands
from drivers.modbus.codec import decode, encode, sunspec_sentinel
from drivers.modbus.profile import Profile
from drivers.setpoints import Setpoints
from drivers.sim.device_models import Choice, DeviceIO, DeviceModel
from drivers.sim.device_profiles import Installer, ProfileUnavailable, profile_for_device
from drivers.sim.device_server import WatchedServer
from drivers.sim.plant import Plant, StepResult, Vehicle
from drivers.sim.register_server import Faults

Override = float | Literal["sentinel"]
"""A value forced into a point: a number (NaN included) or the point's "not implemented" image."""


class SiteSeries(Protocol):
    """What the site does by itself at a UTC time: PV available and load (kW by asset name),
    hydrogen offtake (kg/h by offtake name)."""

    def pv_available_kw(self, at: datetime) -> dict[str, float]: ...

    def load_kw(self, at: datetime) -> dict[str, float]: ...

    def offtake_kg_per_h(self, at: datetime) -> dict[str, float]: ...


@dataclass(frozen=True)
class ConstantSeries:
    """A :class:`SiteSeries` that never changes."""

    pv_kw: Mapping[str, float]
    load: Mapping[str, float]
    offtake: Mapping[str, float] = field(default_factory=dict)

    def pv_available_kw(self, at: datetime) -> dict[str, float]:
        return dict(self.pv_kw)

    def load_kw(self, at: datetime) -> dict[str, float]:
        return dict(self.load)

    def offtake_kg_per_h(self, at: datetime) -> dict[str, float]:
        return dict(self.offtake)


@dataclass(frozen=True)
class VehicleSession:
    """A vehicle at ``charger`` from arrival to departure (UTC) wanting ``energy_kwh``; ``max_kw``
    is its on-board charger's limit (None: the charger's)."""

    charger: str
    session_id: str
    arrival_utc: datetime
    departure_utc: datetime
    energy_kwh: float
    max_kw: float | None = None


@dataclass(frozen=True)
class SimDevice:
    """A device to serve: its asset name, profile (a name, or a profile itself), address and the
    model behind it."""

    name: str
    profile: str | Profile
    model: DeviceModel
    host: str = "127.0.0.1"
    port: int = 0
    unit_id: int = 1


class ServedDevice(DeviceIO):
    """A device being served: its profile, model, server and forced point values."""

    def __init__(self, name: str, profile: Profile, model: DeviceModel, server: WatchedServer,
                 installer: Installer | None) -> None:
        self.name = name
        self.profile = profile
        self.model = model
        self.server = server
        self.installer = installer
        self.now_s = server.clock()
        self.overrides: dict[str, Override] = {}
        self.publish_errors: dict[str, str] = {}
        """Point or field -> why the last publish could not write it (for inspection, not raised)."""
        self._command_registers = {
            c.address + i for c in profile.commands.values() for i in range(c.width)
        }

    # -- DeviceIO --------------------------------------------------------------------------------

    def point_value(self, name: str) -> float | str | None:
        point = self.profile.points.get(name)
        if point is None:
            return None
        value = decode(self.server.get_registers(point.table, point.address, point.width),
                       self.profile.point_spec(name))
        return value if isinstance(value, int | float | str) else None

    def last_client_write(self) -> float | None:
        times = [self.server.last_write(c.address, c.width) for c in self.profile.commands.values()]
        known = [t for t in times if t is not None]
        return max(known) if known else None

    def watchdog_remaining_s(self) -> float | None:
        remaining: list[float] = []
        for c in self.profile.commands.values():
            last = self.server.last_write(c.address, c.width)
            if c.watchdog_s is not None and last is not None:
                remaining.append(c.watchdog_s - (self.now_s - last))
        return min(remaining) if remaining else None

    # -- commands and state -----------------------------------------------------------------------

    def command_fields(self) -> dict[str, float]:
        """Setpoint fields in force now, from commands a client wrote or, for a command whose
        device watchdog ran out (or that was never written), its fallback."""
        values: dict[str, float] = {}
        for name, c in self.profile.commands.items():
            last = self.server.last_write(c.address, c.width)
            if c.watchdog_s is not None and (last is None or self.now_s - last > c.watchdog_s):
                fallback = c.fallback_value
                if c.fallback_point is not None:
                    point = self.point_value(c.fallback_point)
                    fallback = float(point) if isinstance(point, int | float) else None
                if fallback is not None:
                    values[name] = fallback
                continue
            if last is None:
                continue
            registers = self.server.get_registers("holding", c.address, c.width)
            raw = decode(registers, self.profile.command_spec(name))
            if isinstance(raw, int | float) and math.isfinite(raw):
                values[name] = float(raw)
        fields = from_commands(self.profile, values)
        # A field whose mapping writes constants with it (enable flags, modes) is in force only
        # while those commands hold their constants.
        for field_name, entry in COMMAND_MAPPINGS.get(self.profile.name, {}).items():
            for source in command_sources(entry):
                held = values.get(source.command, math.nan)
                if source.constant is not None and not math.isclose(held, source.constant):
                    fields.pop(field_name, None)
        return fields

    def _is_command_register(self, point_name: str) -> bool:
        p = self.profile.points[point_name]
        return p.table == "holding" and any(
            a in self._command_registers for a in range(p.address, p.address + p.width)
        )

    def publish(self, capability: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
        """Write state into the registers; a command register keeps what the client wrote.

        A :class:`Choice` value publishes its first alternative the mapping accepts. A point with
        a scale-factor point is encoded with the scale factor in the registers, raised (and the
        other points sharing it re-encoded) when the value does not fit.
        """
        self.publish_errors.clear()
        points: dict[str, float | str] = {}
        for field_name, value in capability.items():
            error = ""
            for option in value if isinstance(value, Choice) else (value,):
                try:
                    points.update(from_capability(self.profile, {field_name: option}))
                    error = ""
                    break
                except (KeyError, ValueError, TypeError) as exc:
                    error = f"{type(exc).__name__}: {exc}"
            if error:
                self.publish_errors[field_name] = error
        for name, value in extra.items():
            if name in self.profile.points and name not in points and value is not None:
                points[name] = value
        scaled: dict[str, dict[str, float]] = {}
        with self.server.local():
            for name, value in points.items():
                if name not in self.profile.points or self._is_command_register(name):
                    continue
                sf_point = self.profile.points[name].scale_factor_point
                if sf_point is not None and isinstance(value, int | float):
                    scaled.setdefault(sf_point, {})[name] = float(value)
                    continue
                try:
                    self.server.set_point(name, value)
                except (ValueError, TypeError) as exc:
                    self.publish_errors[name] = f"value {value!r}: {exc}"
            for sf_point, values in scaled.items():
                self._publish_scaled(sf_point, values)
            for name, forced in self.overrides.items():
                self._force(name, forced)

    def _publish_scaled(self, sf_point: str, values: dict[str, float]) -> None:
        current = self.point_value(sf_point)
        sf0 = int(current) if isinstance(current, int | float) else 0
        group = dict(values)
        for name, p in self.profile.points.items():
            if p.scale_factor_point == sf_point and name not in group:
                old = decode(self.server.get_registers(p.table, p.address, p.width),
                             self.profile.point_spec(name), sf0)
                if isinstance(old, int | float):
                    group[name] = float(old)
        for sf in range(sf0, sf0 + 8):
            try:
                images = {n: encode(v, self.profile.point_spec(n), sf) for n, v in group.items()}
            except ValueError:
                continue
            if sf != sf0:
                self.server.set_point(sf_point, sf)
            for name, registers in images.items():
                p = self.profile.points[name]
                self.server.set_registers(p.table, p.address, registers)
            return
        for name, value in values.items():
            self.publish_errors[name] = (
                f"value {value!r}: does not fit with scale factor {sf_point} {sf0}..{sf0 + 7}"
            )

    def _force(self, name: str, value: Override) -> None:
        point = self.profile.points[name]
        spec = self.profile.point_spec(name)
        if value != "sentinel":
            self.server.set_point(name, value)
            return
        image = sunspec_sentinel(point.type) if point.sentinel == "sunspec" else point.sentinel
        if not isinstance(image, int):
            self.server.set_point(name, math.nan)  # floats: NaN is their "not available"
            return
        words = [(image >> (16 * (point.width - 1 - i))) & 0xFFFF for i in range(point.width)]
        if spec.word_order == "little":
            words.reverse()
        if spec.byte_order == "little":
            words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
        self.server.set_registers(point.table, point.address, words)


class SiteSimulator:
    """Serves every device of a site from one plant model stepped on one clock.

    ``clock`` gives simulated seconds (monotonic); ``start_utc`` is the UTC time at the clock's
    reading when the simulator is created. Devices whose profile is not available are listed in
    ``skipped`` (name -> reason) and their assets run with default requests.
    """

    def __init__(
        self,
        plant: Plant,
        devices: Iterable[SimDevice],
        series: SiteSeries,
        *,
        start_utc: datetime,
        clock: Callable[[], float] = time.monotonic,
        sessions: Sequence[VehicleSession] = (),
        max_step_s: float = 60.0,
    ) -> None:
        if start_utc.tzinfo is None:
            raise ValueError(f"start_utc must be timezone-aware, got {start_utc.isoformat()}")
        if not max_step_s > 0:
            raise ValueError(f"max_step_s must be > 0, got {max_step_s!r}")
        self.plant = plant
        self.series = series
        self.clock = clock
        self.max_step_s = max_step_s
        self._t0 = clock()
        self._start_utc = start_utc
        self._last = self._t0
        self.last_result: StepResult | None = None
        self.devices: dict[str, ServedDevice] = {}
        self.skipped: dict[str, str] = {}
        self.sessions: dict[str, list[VehicleSession]] = {}
        for s in sorted(sessions, key=lambda s: s.arrival_utc):
            if s.charger not in plant.chargers:
                raise ValueError(f"session {s.session_id}: charger: no such charger {s.charger!r}")
            self.sessions.setdefault(s.charger, []).append(s)
        for d in devices:
            self._add(d)

    def _add(self, d: SimDevice) -> None:
        if d.name in self.devices or d.name in self.skipped:
            raise ValueError(f"device {d.name!r}: name: used twice")
        if isinstance(d.profile, Profile):
            profile, installer = d.profile, None
        else:
            try:
                profile, installer = profile_for_device(d.profile)
            except ProfileUnavailable as exc:
                self.skipped[d.name] = str(exc)
                return
        if profile.kind != d.model.kind:
            raise ValueError(f"device {d.name!r}: profile: {profile.name} is a {profile.kind}, "
                             f"the asset needs a {d.model.kind}")
        server = WatchedServer(profile, d.host, d.port, d.unit_id, clock=self.clock)
        self.devices[d.name] = ServedDevice(d.name, profile, d.model, server, installer)

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every server (a port in use raises OSError naming the device) and publish."""
        started: list[ServedDevice] = []
        try:
            for dev in self.devices.values():
                try:
                    await dev.server.start()
                except OSError as exc:
                    raise OSError(exc.errno, f"device {dev.name}: cannot listen on "
                                             f"{dev.server.host}:{dev.server.port}: {exc.strerror}") from None
                started.append(dev)
                if dev.installer is not None:
                    with dev.server.local():
                        dev.installer(dev.server)
        except BaseException:
            for dev in started:
                await dev.server.stop()
            raise
        self._publish_preview()

    async def stop(self) -> None:
        for dev in self.devices.values():
            await dev.server.stop()

    async def __aenter__(self) -> SiteSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- time ----------------------------------------------------------------------------------------

    def utc_at(self, t_s: float) -> datetime:
        return self._start_utc + timedelta(seconds=t_s - self._t0)

    @property
    def time_utc(self) -> datetime:
        """Simulated UTC time the plant has been stepped to."""
        return self.utc_at(self._last)

    def step(self) -> StepResult | None:
        """Step the plant up to the clock's present (in steps of at most ``max_step_s``) and
        publish; returns the last step's result (None when no time has passed yet)."""
        now = self.clock()
        if now <= self._last:
            return self.last_result
        while self._last < now:
            t_end = min(self._last + self.max_step_s, now)
            self.last_result = self._step_once(self._last, t_end)
            self._last = t_end
        assert self.last_result is not None
        for dev in self.devices.values():
            dev.publish(*dev.model.state(self.last_result, self.plant, dev))
        return self.last_result

    async def run(self, period_s: float, stop: asyncio.Event,
                  sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """Step every ``period_s`` (wall seconds) until ``stop`` is set."""
        while not stop.is_set():
            self.step()
            await sleep(period_s)

    def _step_once(self, t0: float, t1: float) -> StepResult:
        at = self.utc_at(t0)
        dt_s = t1 - t0
        dt_h = dt_s / 3600.0
        self._update_vehicles(at)
        sp = Setpoints()
        for dev in self.devices.values():
            dev.now_s = t1
            dev.model.request(dev.command_fields(), sp, self.plant, dev, t1)
        offtake = {name: kg_h * dt_h for name, kg_h in self.series.offtake_kg_per_h(at).items()}
        result = self.plant.step(dt_h, self.series.pv_available_kw(at), self.series.load_kw(at), offtake, sp)
        for dev in self.devices.values():
            dev.model.advance(result, self.plant, dt_s)
        return result

    def _update_vehicles(self, at: datetime) -> None:
        for name, sessions in self.sessions.items():
            charger = self.plant.chargers[name]
            active = next((s for s in sessions if s.arrival_utc <= at < s.departure_utc), None)
            if active is None:
                charger.vehicle = None
            elif charger.vehicle is None or charger.vehicle.session_id != active.session_id:
                charger.vehicle = Vehicle(active.session_id, active.energy_kwh, max_kw=active.max_kw)

    def _publish_preview(self) -> None:
        """Publish the state a 1 s step would show, computed on a copy (the plant does not move)."""
        plant = copy.deepcopy(self.plant)
        at = self.time_utc
        sp = Setpoints()
        for dev in self.devices.values():
            dev.now_s = self._last
            dev.model.request(dev.command_fields(), sp, plant, dev, self._last)
        dt_h = 1.0 / 3600.0
        offtake = {n: kg_h * dt_h for n, kg_h in self.series.offtake_kg_per_h(at).items()}
        result = plant.step(dt_h, self.series.pv_available_kw(at), self.series.load_kw(at), offtake, sp)
        for dev in self.devices.values():
            dev.publish(*dev.model.state(result, plant, dev))

    # -- fault injection -----------------------------------------------------------------------------

    def device(self, name: str) -> ServedDevice:
        if name not in self.devices:
            why = f" ({self.skipped[name]})" if name in self.skipped else ""
            raise KeyError(f"device {name!r}: not served{why}; served: {', '.join(sorted(self.devices))}")
        return self.devices[name]

    def faults(self, name: str) -> Faults:
        """The device's fault switches: ``no_answer``, ``delay_s``, ``exception_code``."""
        return self.device(name).server.faults

    def drop_connections(self, name: str) -> None:
        self.device(name).server.drop_connections()

    def override_point(self, name: str, point: str, value: Override) -> None:
        """Force ``point`` of device ``name`` to ``value`` (NaN, "sentinel" or a number) until
        :meth:`clear_override`; applied now and after every step."""
        dev = self.device(name)
        if point not in dev.profile.points:
            raise KeyError(f"device {name!r}: point: no such point {point!r} in {dev.profile.name}")
        dev.overrides[point] = value
        with dev.server.local():
            dev._force(point, value)

    def clear_override(self, name: str, point: str | None = None) -> None:
        dev = self.device(name)
        if point is None:
            dev.overrides.clear()
        else:
            dev.overrides.pop(point, None)
