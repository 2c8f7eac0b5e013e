"""The site's devices as the service sees them: one poll target and one guarded writer each.

Profiles come from the config (`device.profile`); SunSpec profiles are resolved on the device's
own model chain at start; a device that cannot be resolved then (an inverter asleep at night) is
retried in the background with a capped exponential backoff and linked once found. Polling runs
in wall time (intervals in wall seconds); a reading older than its TTL is missing ("stale"), which
the safety guard turns into the device's fallback.

`refresh_many`, `write_many` and `keepalive_many` talk to all devices side by side and return
within a budget of wall seconds: a device that stops answering is left to its own background
task (one poll and one write or keep-alive in flight per device at most) and never holds up the
others.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from drivers.capabilities import CapabilityReading, Setpoint, to_commands
from drivers.modbus.profile import Profile
from drivers.modbus.safe_write import SafeWriter, WriteOutcome
from drivers.modbus.transport import ModbusTcpTransport, TransportError
from drivers.poller import Poller, PollTarget
from drivers.sim.device_profiles import ProfileUnavailable, profile_for_device
from drivers.sunspec import NEVER_ZERO, SUNSPEC_PROFILE_NAMES, SunSpecError, discover, get_spec, resolve
from ems.config.models import SiteConfig
from ems.config.site_devices import SiteDevice, site_devices
from ems.site.commands import within_device_limits

log = logging.getLogger("ems.devices")

CommandKind = Literal["write", "keepalive"]
WriteDone = Callable[[str, list[WriteOutcome]], None]
"""Called with a device's name and its write outcomes when a `DeviceLinks.write_many` write ends."""


@dataclass
class Watchdog:
    """A device watchdog the service arms (profile ``[watchdog_arm]``)."""

    command: str
    timeout_s: float
    armed: bool = False
    problem: str | None = "not armed yet"


@dataclass
class Link:
    device: SiteDevice
    profile: Profile
    writer: SafeWriter | None
    """None for devices without commands (meters)."""


class DeviceLinks:
    """Poll and command every configured device of a site."""

    def __init__(self, cfg: SiteConfig, poll_interval_s: float = 1.0, ttl_s: float | None = None,
                 timeout_s: float = 1.0, command_clock: Callable[[], float] = time.monotonic,
                 clock: Callable[[], float] = time.monotonic, resolve_backoff_initial_s: float = 1.0,
                 resolve_backoff_max_s: float = 60.0) -> None:
        """``command_clock`` (seconds) times keep-alives and rate limits: the site clock, since
        device watchdogs count site time. ``clock`` (seconds) is the poller's: it times the
        polling intervals and the TTLs (``poll_interval_s`` and ``ttl_s`` are in its seconds).
        A device not set up at start is tried again after ``resolve_backoff_initial_s`` wall
        seconds, doubling up to ``resolve_backoff_max_s``."""
        self.cfg = cfg
        self.command_clock = command_clock
        self.clock = clock
        self.poll_interval_s = poll_interval_s
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.links: dict[str, Link] = {}
        self.poller: Poller | None = None
        self.resolve_backoff_initial_s = resolve_backoff_initial_s
        self.resolve_backoff_max_s = max(resolve_backoff_initial_s, resolve_backoff_max_s)
        self.configured: list[str] = []
        """Every device of the site config, linked or not (set by `start`)."""
        self.unresolved: dict[str, str] = {}
        """Devices not set up yet (name -> last reason); retried in the background until found."""
        self.resolve_attempts: dict[str, int] = {}
        """Failed set-up attempts of each device still unresolved."""
        self._polls: dict[str, asyncio.Task[Any]] = {}
        """The `refresh_many` poll running for each device."""
        self._commands: dict[str, tuple[CommandKind, asyncio.Task[Any]]] = {}
        """The write or keep-alive in flight to each device (never more than one)."""
        self._background: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.watchdogs: dict[str, Watchdog] = {}
        """Devices whose own watchdog the service arms (name -> its state)."""

    async def start(self) -> None:
        self._stopping = False
        entries = site_devices(self.cfg)
        self.configured = [e.name for e in entries]
        profiles: dict[str, Profile] = {}
        pending: list[SiteDevice] = []
        for entry in entries:
            try:
                profiles[entry.name] = await self._profile(entry)
            except ProfileUnavailable as exc:  # a config problem: trying again will not help
                self.unresolved[entry.name] = str(exc)
                log.warning("device %s: not set up: %s", entry.name, exc)
            except (SunSpecError, TransportError, OSError) as exc:
                self._not_found(entry, exc)
                pending.append(entry)
        # energy counters of simulated devices advance in site time, which may run faster than wall time
        self.poller = Poller([self._target(e, profiles[e.name]) for e in entries if e.name in profiles],
                             timeout_s=self.timeout_s, clock=self.clock, device_clock=self.command_clock)
        for e in entries:
            if e.name in profiles:
                self._link(e, profiles[e.name])
        self.poller.start()
        await self.arm_watchdogs()
        if pending:
            self._spawn("unresolved devices", "set-up", self._resolve_later(pending))

    def _target(self, entry: SiteDevice, profile: Profile) -> PollTarget:
        return PollTarget(entry.name, profile, entry.device.host, entry.device.port, entry.device.unit_id,
                          interval_s=self.poll_interval_s, ttl_s=self.ttl_s, nameplate_w=nameplate_w(entry))

    def _link(self, entry: SiteDevice, profile: Profile) -> None:
        assert self.poller is not None
        writer = None
        if profile.commands:
            transport = self.poller.pool.get(entry.device.host, entry.device.port)
            writer = SafeWriter(profile, transport, entry.device.unit_id, clock=self.command_clock,
                                never_zero=NEVER_ZERO.get(profile.name, frozenset()),
                                keepalive_s=self._feeding(entry, profile))
        self.links[entry.name] = Link(entry, profile, writer)

    def _not_found(self, entry: SiteDevice, exc: Exception) -> None:
        attempts = self.resolve_attempts[entry.name] = self.resolve_attempts.get(entry.name, 0) + 1
        self.unresolved[entry.name] = str(exc)
        if attempts == 1:
            log.warning("device %s: not set up: %s; retrying in the background", entry.name, exc)
        else:
            log.debug("device %s: still not set up (attempt %d): %s", entry.name, attempts, exc)

    async def _resolve_later(self, pending: list[SiteDevice]) -> None:
        """Try to set up each of ``pending`` again, with a capped exponential backoff, until all
        are linked (then polled and commanded like the others)."""
        delay = self.resolve_backoff_initial_s
        while pending and not self._stopping:
            await asyncio.sleep(delay)
            for entry in list(pending):
                try:
                    profile = await self._profile(entry)
                except (SunSpecError, TransportError, OSError) as exc:
                    self._not_found(entry, exc)
                    continue
                if self._stopping or self.poller is None:
                    return
                pending.remove(entry)
                self.unresolved.pop(entry.name, None)
                self.resolve_attempts.pop(entry.name, None)
                self.poller.add(self._target(entry, profile))
                self._link(entry, profile)
                log.info("device %s: found and linked", entry.name)
                await self.arm_watchdogs()
            delay = min(2 * delay, self.resolve_backoff_max_s)

    def _feeding(self, entry: SiteDevice, profile: Profile) -> dict[str, float]:
        """Keep-alive periods (site s) of the commands that feed an armed watchdog: a third of
        its timeout."""
        arm = profile.watchdog_arm
        if arm is None:
            return {}
        timeout_s = entry.device.watchdog_s or arm.value_s
        self.watchdogs[entry.name] = Watchdog(arm.command, timeout_s)
        return {name: timeout_s / 3.0 for name in arm.fed_by}

    async def arm_watchdogs(self) -> None:
        """Arm every device watchdog that is not armed yet (written only when the device does
        not hold the timeout already). A device that does not answer is tried again with the
        next keep-alives."""
        for name, watchdog in self.watchdogs.items():
            link = self.links.get(name)
            if watchdog.armed or link is None or link.writer is None or self._stopping:
                continue
            outcome = await link.writer.ensure(watchdog.command, watchdog.timeout_s)
            problem = outcome.error
            if problem is None and outcome.refused_budget:
                problem = "flash write budget used up"
            elif problem is None and outcome.readback == "readback_mismatch":
                problem = f"the device holds {outcome.readback_value} after the write"
            watchdog.armed, watchdog.problem = problem is None, problem
            if problem is None:
                log.info("device %s: watchdog armed (%s = %g s)", name, watchdog.command, watchdog.timeout_s)
            else:
                log.warning("device %s: watchdog not armed: %s", name, problem)

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
        """Cancel the polls, writes and keep-alives still in flight (waiting until they have
        ended), then stop polling."""
        self._stopping = True
        while self._background:
            # Python 3.11's asyncio.wait_for can swallow a cancellation (see `Poller.stop`):
            # cancel again until every task has really ended
            pending = set(self._background)
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.5)
        self._polls.clear()
        self._commands.clear()
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

    def diagnostics(self) -> dict[str, Any]:
        """Per link (host:port) its request and error counts, errors by kind, latency and backoff
        state, per unit id behind it the same; and the devices not set up yet with the reason and
        the attempts so far (for `/status` and `/metrics`)."""
        pool = None if self.poller is None else self.poller.pool
        links = {} if pool is None else {name: t.diagnostics() for name, t in pool.transports().items()}
        return {
            "links": links,
            "unresolved": {name: {"reason": reason, "attempts": self.resolve_attempts.get(name, 0)}
                           for name, reason in self.unresolved.items()},
        }

    def reading(self, name: str) -> CapabilityReading | None:
        """The latest typed reading of ``name`` (fields missing with a reason when stale)."""
        if self.poller is None or name not in self.links:
            return None
        try:
            return self.poller.reading(name)
        except (KeyError, ValueError) as exc:
            log.warning("device %s: no reading: %s", name, exc)
            return None

    def readings(self) -> dict[str, CapabilityReading | None]:
        """Every linked device's latest reading (see :meth:`reading`)."""
        return {name: self.reading(name) for name in self.links}

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

    # -- side by side, within a budget ----------------------------------------------------------

    async def refresh_many(self, names: Iterable[str], budget_s: float) -> None:
        """Poll each of ``names`` now, side by side; return when all polls have ended or after
        ``budget_s`` wall seconds, whichever is first. A poll still running goes on in the
        background and is not started again while it runs (its reading goes stale by TTL)."""
        poller = self.poller
        if poller is None or self._stopping:
            return
        running: list[asyncio.Task[Any]] = []
        for name in dict.fromkeys(names):
            if name not in self.links:
                continue
            task = self._polls.get(name)
            if task is None or task.done():
                task = self._polls[name] = self._spawn(name, "poll", poller.poll_once(name))
            running.append(task)
        await _within(running, budget_s)

    async def write_many(self, setpoints: Mapping[str, Setpoint], budget_s: float,
                         on_done: WriteDone | None = None) -> dict[str, list[WriteOutcome] | None]:
        """Write each device's setpoint as `write` does, all devices side by side; return after
        all writes have ended or after ``budget_s`` wall seconds, whichever is first.

        Returns the outcomes per device of the writes that ended, None for a device whose write is
        still in flight or was skipped because its previous write still is (never two writes in
        flight to one device; a write waits for a keep-alive in flight to the device to end).
        ``on_done(name, outcomes)`` is called exactly once for every write that ends, from its
        task: before this returns for the writes that ended in time, later for the others. It is
        the one place to audit every write.
        """
        started: dict[str, asyncio.Task[list[WriteOutcome]]] = {}
        if not self._stopping:
            for name, setpoint in setpoints.items():
                busy = self._in_flight(name)
                if busy is not None and busy[0] == "write":
                    log.debug("device %s: previous write still in flight, %s not written", name, setpoint)
                    continue
                before = busy[1] if busy is not None else None
                task = self._spawn(name, "write", self._write_task(name, setpoint, before, on_done))
                self._commands[name] = ("write", task)
                started[name] = task
        await _within(started.values(), budget_s)
        out: dict[str, list[WriteOutcome] | None] = dict.fromkeys(setpoints)
        for name, task in started.items():
            if task.done() and not task.cancelled() and task.exception() is None:
                out[name] = task.result()
        return out

    async def keepalive_many(self, budget_s: float) -> None:
        """Feed the due keep-alives of every device, side by side, skipping a device with a write
        or keep-alive still in flight; return when all have ended or after ``budget_s`` wall
        seconds, whichever is first (those still running go on in the background)."""
        if self._stopping:
            return
        started: list[asyncio.Task[Any]] = []
        unarmed = [n for n, w in self.watchdogs.items() if not w.armed and self._in_flight(n) is None]
        if unarmed:
            task = self._spawn(unarmed[0], "watchdog arming", self.arm_watchdogs())
            for name in unarmed:
                self._commands[name] = ("keepalive", task)
            started.append(task)
        for name, link in self.links.items():
            writer = link.writer
            if writer is None or self._in_flight(name) is not None or not writer.due_keepalives():
                continue
            task = self._spawn(name, "keep-alive", self._keepalive_task(name, writer))
            self._commands[name] = ("keepalive", task)
            started.append(task)
        await _within(started, budget_s)

    def in_flight(self, name: str) -> CommandKind | None:
        """The command in flight to device ``name`` from `write_many` or `keepalive_many`:
        "write", "keepalive" or None."""
        busy = self._in_flight(name)
        return busy[0] if busy is not None else None

    def polling(self, name: str) -> bool:
        """A `refresh_many` poll of device ``name`` is still running."""
        task = self._polls.get(name)
        return task is not None and not task.done()

    def _in_flight(self, name: str) -> tuple[CommandKind, asyncio.Task[Any]] | None:
        busy = self._commands.get(name)
        return busy if busy is not None and not busy[1].done() else None

    async def _write_task(self, name: str, setpoint: Setpoint, before: asyncio.Task[Any] | None,
                          on_done: WriteDone | None) -> list[WriteOutcome]:
        if before is not None:
            await asyncio.wait([before])  # the keep-alive in flight ends first (however it ends)
        try:
            outcomes = await self.write(name, setpoint)
        except Exception as exc:  # write() reports device faults as outcomes; anything else is a bug
            log.exception("device %s: write of %s failed", name, setpoint)
            outcomes = [WriteOutcome(type(setpoint).__name__, math.nan, error=f"{type(exc).__name__}: {exc}")]
        if on_done is not None:
            try:
                on_done(name, outcomes)
            except Exception:
                log.exception("device %s: on_done of a write failed", name)
        return outcomes

    async def _keepalive_task(self, name: str, writer: SafeWriter) -> None:
        for outcome in await writer.keepalive():
            if outcome.error is not None:
                log.debug("device %s: keep-alive of %s: %s", name, outcome.command, outcome.error)

    def _spawn(self, name: str, what: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a tracked background task for device ``name``."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{what} {name}")
        self._background.add(task)
        task.add_done_callback(functools.partial(self._ended, name, what))
        return task

    def _ended(self, name: str, what: str, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if self._polls.get(name) is task:
            del self._polls[name]
        busy = self._commands.get(name)
        if busy is not None and busy[1] is task:
            del self._commands[name]
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("device %s: %s failed: %s: %s", name, what, type(exc).__name__, exc, exc_info=exc)

    def shortest_keepalive_s(self) -> float | None:
        periods = [p for link in self.links.values() if link.writer is not None
                   for name in link.profile.commands
                   if (p := link.writer.keepalive_period(name)) is not None]
        return min(periods) if periods else None

    def names(self, section: str) -> list[str]:
        return [n for n, link in self.links.items() if link.device.section == section]


def nameplate_w(entry: SiteDevice) -> float | None:
    """The asset's rated power, W, for the poller's plausibility checks (None when the config
    gives none: a load meter, the grid meter, whose limits are what the site should hold, not
    what the connection can carry: a meter reading far beyond them is the alarm, not a fault)."""
    asset = entry.asset
    kw: float
    if entry.section == "pv":
        kw = asset.kwp
    elif entry.section == "battery":
        kw = max(asset.max_charge_kw, asset.max_discharge_kw)
    elif entry.section == "ev_charger":
        kw = max(asset.max_power_kw, asset.max_discharge_kw)
    elif entry.section == "electrolyser":
        kw = asset.rated_kw
    else:
        return None
    return 1000.0 * kw if kw > 0 else None


async def _within(tasks: Collection[asyncio.Task[Any]], budget_s: float) -> None:
    """Wait until every task of ``tasks`` has ended or ``budget_s`` wall seconds have passed;
    cancels nothing."""
    if tasks:
        await asyncio.wait(tasks, timeout=max(0.0, budget_s))
