"""The site's devices as the service sees them: one poll target and one guarded writer each.

Profiles come from the config (`device.profile`); SunSpec profiles are resolved on the device's
own model chain at start. Polling runs in wall time (intervals in wall seconds); a reading older
than its TTL is missing ("stale"), which the safety guard turns into the device's fallback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drivers.capabilities import (
    BatterySetpoint,
    CapabilityReading,
    ElectrolyserSetpoint,
    EvChargerSetpoint,
    PvLimitSetpoint,
    Setpoint,
    to_commands,
)
from drivers.modbus.profile import Profile
from drivers.modbus.safe_write import SafeWriter, WriteOutcome
from drivers.modbus.transport import ModbusTcpTransport, TransportError
from drivers.poller import Poller, PollTarget
from drivers.sim.device_profiles import profile_for_device
from drivers.sunspec import NEVER_ZERO, SUNSPEC_PROFILE_NAMES, SunSpecError, discover, get_spec, resolve
from ems.config.models import SiteConfig
from ems.config.site_devices import SiteDevice, site_devices

log = logging.getLogger("ems.devices")


@dataclass
class Link:
    device: SiteDevice
    profile: Profile
    writer: SafeWriter | None
    """None for devices without commands (meters)."""


class DeviceLinks:
    """Poll and command every configured device of a site."""

    def __init__(self, cfg: SiteConfig, poll_interval_s: float = 1.0, ttl_s: float | None = None,
                 timeout_s: float = 1.0, command_clock: Callable[[], float] = time.monotonic) -> None:
        """``command_clock`` (seconds) times keep-alives and rate limits: the site clock, since
        device watchdogs count site time."""
        self.cfg = cfg
        self.command_clock = command_clock
        self.poll_interval_s = poll_interval_s
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.links: dict[str, Link] = {}
        self.poller: Poller | None = None
        self.unresolved: dict[str, str] = {}
        """Devices that could not be set up at start (name -> reason); retried by `resolve`."""

    async def start(self) -> None:
        entries = site_devices(self.cfg)
        profiles: dict[str, Profile] = {}
        for entry in entries:
            try:
                profiles[entry.name] = await self._profile(entry)
            except (SunSpecError, TransportError, OSError) as exc:
                self.unresolved[entry.name] = str(exc)
                log.warning("device %s: not set up: %s", entry.name, exc)
        targets = [PollTarget(e.name, profiles[e.name], e.device.host, e.device.port, e.device.unit_id,
                              interval_s=self.poll_interval_s, ttl_s=self.ttl_s)
                   for e in entries if e.name in profiles]
        self.poller = Poller(targets, timeout_s=self.timeout_s)
        for e in entries:
            if e.name not in profiles:
                continue
            profile = profiles[e.name]
            writer = None
            if profile.commands:
                transport = self.poller.pool.get(e.device.host, e.device.port)
                writer = SafeWriter(profile, transport, e.device.unit_id, clock=self.command_clock,
                                    never_zero=NEVER_ZERO.get(profile.name, frozenset()))
            self.links[e.name] = Link(e, profile, writer)
        self.poller.start()

    async def first_polls(self, timeout_s: float) -> None:
        """Wait (up to ``timeout_s`` wall seconds) until every device has been polled once, so the
        first dispatch sees readings rather than "not polled yet"."""
        if self.poller is None:
            return
        poller = self.poller
        deadline = asyncio.get_running_loop().time() + timeout_s
        while any(poller.stats(n).polls == 0 for n in poller.names):
            if asyncio.get_running_loop().time() > deadline:
                return
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.poller is not None:
            await self.poller.stop()

    async def _profile(self, entry: SiteDevice) -> Profile:
        profile, _ = profile_for_device(entry.device.profile)
        if profile.name not in SUNSPEC_PROFILE_NAMES:
            return profile
        transport = ModbusTcpTransport(entry.device.host, entry.device.port, timeout_s=self.timeout_s)
        try:
            smap = await discover(transport, entry.device.unit_id)
            resolved: Profile = resolve(get_spec(profile.name), smap)
            return resolved
        finally:
            transport.close()

    def reading(self, name: str) -> CapabilityReading | None:
        """The latest typed reading of ``name`` (fields missing with a reason when stale)."""
        if self.poller is None or name not in self.links:
            return None
        try:
            return self.poller.reading(name)
        except (KeyError, ValueError) as exc:
            log.warning("device %s: no reading: %s", name, exc)
            return None

    async def refresh(self, name: str) -> None:
        """Poll ``name`` now (between its scheduled polls)."""
        if self.poller is not None and name in self.links:
            await self.poller.poll_once(name)

    def online(self, name: str) -> bool:
        """The device answered within its TTL."""
        if self.poller is None or name not in self.links:
            return False
        stats = self.poller.stats(name)
        last = stats.last_good_read_at
        return last is not None and self.poller.clock() - last <= self.poller.target(name).ttl

    async def write(self, name: str, setpoint: Setpoint) -> list[WriteOutcome]:
        """Write ``setpoint`` to device ``name`` through its guarded writer (never raises for
        device faults: a failed write is an outcome with ``error``)."""
        link = self.links.get(name)
        if link is None or link.writer is None:
            return [WriteOutcome(type(setpoint).__name__, float("nan"), error=f"device {name!r} not linked")]
        setpoint = within_device_limits(link.profile, setpoint)
        try:
            commands = to_commands(link.profile, setpoint)
        except ValueError as exc:
            return [WriteOutcome(type(setpoint).__name__, float("nan"), error=str(exc))]
        return [await link.writer.write(command, value) for command, value in commands.items()]

    async def keepalive(self) -> None:
        """Re-write every command whose device watchdog is due to be fed."""
        for link in self.links.values():
            if link.writer is not None and link.writer.due_keepalives():
                await link.writer.keepalive()

    def shortest_keepalive_s(self) -> float | None:
        periods = [p for link in self.links.values() if link.writer is not None
                   for name in link.profile.commands
                   if (p := link.writer.keepalive_period(name)) is not None]
        return min(periods) if periods else None

    def names(self, section: str) -> list[str]:
        return [n for n, link in self.links.items() if link.device.section == section]


def setpoint_for(section: str, asset: Any, value: float | None) -> Setpoint | None:
    """The device setpoint for an asset's planned power (kW): battery net (+ discharge),
    EV charging power → current per phase, electrolyser power → run + rate, PV limit kW → %."""
    if section == "battery":
        return BatterySetpoint(power_net_kw=float(value or 0.0))
    if section == "ev_charger":
        kw = max(0.0, float(value or 0.0))
        return EvChargerSetpoint(current_a=kw * 1000.0 / (asset.phases * asset.voltage_v))
    if section == "electrolyser":
        kw = max(0.0, float(value or 0.0))
        if kw <= 0.0:
            return ElectrolyserSetpoint(run=False)
        return ElectrolyserSetpoint(run=True, production_rate_pct=min(100.0, 100.0 * kw / asset.rated_kw))
    if section == "pv":
        limit = 100.0 if value is None else max(0.0, min(100.0, 100.0 * float(value) / asset.kwp))
        return PvLimitSetpoint(limit_pct=limit)
    return None


def device_min_rate_pct(profile: Profile) -> float | None:
    """The lowest production rate (%) an electrolyser device runs at, when its profile says."""
    command = profile.commands.get("production_rate_pct")
    return command.limits[0] if command is not None and command.limits is not None else None


def within_device_limits(profile: Profile, setpoint: Setpoint) -> Setpoint:
    """An electrolyser's production rate raised or lowered into the device's own range (e.g.
    Enapter runs at 60-100 %): the device cannot run outside it, whatever the config says."""
    if isinstance(setpoint, ElectrolyserSetpoint) and setpoint.production_rate_pct is not None:
        command = profile.commands.get("production_rate_pct")
        if command is not None and command.limits is not None:
            low, high = command.limits
            rate = min(max(setpoint.production_rate_pct, low), high)
            return ElectrolyserSetpoint(run=setpoint.run, production_rate_pct=rate)
    return setpoint
