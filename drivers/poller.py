"""Poll many devices, each at its own interval, concurrently; keep the latest reading of each.

One asyncio task per device; devices behind the same host:port share one transport (its requests
are serialised, others are not held up). A transport failure (no answer, lost connection) keeps
the last good value of a point until it is older than the device's TTL, after which it is
reported missing with the reason "stale". A device's own answer that a value is not available
(a Modbus exception, a sentinel, NaN, out of range) is reported missing at once with that reason.
So is an implausible value: a power beyond :data:`NAMEPLATE_MULTIPLE` times the device's nameplate
power, or an energy counter (``monotonic`` point) that goes down or grows faster than that power
allows. Nothing raises out of the polling loop.

Times are seconds of the injectable monotonic ``clock``; wall (UTC) times are derived from it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from drivers.capabilities import CapabilityReading, check_mapping, to_capability
from drivers.modbus.device import PollResult
from drivers.modbus.profile import ENERGY_UNITS, Point, Profile, ReadBlock, Reading, decode_reads, plan_reads
from drivers.modbus.transport import ModbusTcpTransport, TransportError, TransportPool, percentile

log = logging.getLogger(__name__)

STALE = "stale"
LATENCY_WINDOW = 1000

NAMEPLATE_MULTIPLE = 3.0
"""A power reading beyond this many times the device's nameplate power is implausible."""
POWER_IN_W = {"W": 1.0, "kW": 1000.0, "MW": 1.0e6, "VA": 1.0, "kVA": 1000.0, "var": 1.0, "kvar": 1000.0}
COUNTER_SLACK_WH = 1000.0
"""Growth an energy counter may show beyond what the nameplate allows (its resolution, rounding)."""
COUNTER_RESET_POLLS = 3
"""A counter read lower this many polls in a row is taken as reset (a new baseline)."""


@dataclass(frozen=True)
class PollTarget:
    """One device to poll. ``ttl_s`` defaults to three intervals."""

    name: str
    profile: Profile
    host: str
    port: int
    unit_id: int | None = None
    interval_s: float = 1.0
    ttl_s: float | None = None
    nameplate_w: float | None = None
    """The device's rated power, W (None: no nameplate check)."""

    def __post_init__(self) -> None:
        if not self.interval_s > 0:
            raise ValueError(f"device {self.name}: interval_s must be > 0, got {self.interval_s!r}")
        if self.ttl_s is not None and not self.ttl_s > 0:
            raise ValueError(f"device {self.name}: ttl_s must be > 0, got {self.ttl_s!r}")
        if self.nameplate_w is not None and not self.nameplate_w > 0:
            raise ValueError(f"device {self.name}: nameplate_w must be > 0, got {self.nameplate_w!r}")

    @property
    def ttl(self) -> float:
        return 3 * self.interval_s if self.ttl_s is None else self.ttl_s


@dataclass
class DeviceStats:
    """Per-device counters. Latency is the time one poll (all its reads) took, seconds."""

    polls: int = 0
    good_polls: int = 0
    """Polls in which every read was answered (values may still be missing by the device's word)."""
    errors: int = 0
    """Polls with at least one failed read."""
    consecutive_errors: int = 0
    last_error: str | None = None
    last_good_read_at: float | None = None
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def percentile(self, q: float) -> float | None:
        """The ``q`` quantile (0..1) of recent poll latencies, s (None before the first poll)."""
        return percentile(self.latencies, q)

    @property
    def latency_p50_s(self) -> float | None:
        return percentile(self.latencies, 0.50)

    @property
    def latency_p99_s(self) -> float | None:
        return percentile(self.latencies, 0.99)


@dataclass
class _Held:
    reading: Reading
    good_at: float | None
    """Clock time the value was read (None for a missing reading)."""


class _Device:
    def __init__(self, target: PollTarget, transport: ModbusTcpTransport) -> None:
        self.target = target
        self.transport = transport
        self.unit_id = target.profile.unit_id if target.unit_id is None else target.unit_id
        self.blocks = plan_reads(target.profile)
        self.stats = DeviceStats()
        self.held: dict[str, _Held] = {}
        self.polled_at: datetime | None = None
        self.has_mapping = not check_mapping(target.profile)
        self.counters: dict[str, tuple[float, float]] = {}
        """Last accepted value and clock time of each energy counter."""
        self.counter_backwards: dict[str, int] = {}


def _implausible_power(point: Point, value: float, nameplate_w: float | None) -> str | None:
    if nameplate_w is None or point.unit not in POWER_IN_W:
        return None
    limit = NAMEPLATE_MULTIPLE * nameplate_w
    if abs(value * POWER_IN_W[point.unit]) <= limit:
        return None
    return f"implausible: {value:g} {point.unit} beyond {NAMEPLATE_MULTIPLE:g} x nameplate ({limit:g} W)"


def _implausible_counter(dev: _Device, name: str, point: Point, value: float, now: float) -> str | None:
    """Check counter ``name``'s new ``value`` against the last accepted one; accept it (None) or
    say why not."""
    last = dev.counters.get(name)
    if last is not None:
        before, at = last
        if value < before:
            backwards = dev.counter_backwards[name] = dev.counter_backwards.get(name, 0) + 1
            if backwards < COUNTER_RESET_POLLS:
                return f"implausible: counter went down from {before:g} to {value:g} {point.unit}"
            log.warning("device %s: %s went down %d polls in a row (%g -> %g %s): taken as reset",
                        dev.target.name, name, backwards, before, value, point.unit)
        elif dev.target.nameplate_w is not None:
            per_wh = ENERGY_UNITS[point.unit or "Wh"]
            allowed_wh = NAMEPLATE_MULTIPLE * dev.target.nameplate_w * max(0.0, now - at) / 3600.0
            step_wh = (value - before) * per_wh
            if step_wh > allowed_wh + COUNTER_SLACK_WH:
                return (f"implausible: counter rose by {step_wh:g} Wh in {now - at:g} s "
                        f"(nameplate allows {allowed_wh + COUNTER_SLACK_WH:g} Wh)")
    dev.counters[name] = (value, now)
    dev.counter_backwards.pop(name, None)
    return None


def plausible(dev: _Device, readings: dict[str, Reading], now: float) -> dict[str, Reading]:
    """``readings`` with implausible values (beyond the nameplate, a counter going down or jumping)
    replaced by missing readings that say why."""
    out: dict[str, Reading] = {}
    for name, reading in readings.items():
        value = reading.value
        point = dev.target.profile.points[name]
        if isinstance(value, int | float) and not isinstance(value, bool):
            why = _implausible_power(point, float(value), dev.target.nameplate_w)
            if why is None and point.monotonic:
                why = _implausible_counter(dev, name, point, float(value), now)
            if why is not None:
                reading = Reading(None, reading.unit, why)
        out[name] = reading
    return out


class Poller:
    """Polls ``targets`` until stopped; ``latest``/``reading`` give the freshest view."""

    def __init__(
        self,
        targets: Iterable[PollTarget],
        *,
        clock: Callable[[], float] = time.monotonic,
        pool: TransportPool | None = None,
        timeout_s: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        spread: bool = True,
        device_clock: Callable[[], float] | None = None,
    ) -> None:
        """``spread`` staggers the first polls over each device's interval, so that devices with
        the same interval are not all read in the same instant. ``device_clock`` (seconds) is the
        time the devices' energy counters advance in, for their plausible step: the site clock
        of a simulation run faster than wall time (default ``clock``)."""
        self.clock = clock
        self.device_clock = clock if device_clock is None else device_clock
        self.spread = spread
        self.sleep = sleep
        self._own_pool = pool is None
        self.pool = pool if pool is not None else TransportPool(timeout_s=timeout_s, clock=clock)
        self._epoch = datetime.now(UTC) - timedelta(seconds=clock())
        self._devices: dict[str, _Device] = {}
        for t in targets:
            if t.name in self._devices:
                raise ValueError(f"device {t.name!r}: name: used twice")
            self._devices[t.name] = _Device(t, self.pool.get(t.host, t.port))
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._stopping = False

    @property
    def names(self) -> list[str]:
        return list(self._devices)

    def add(self, target: PollTarget) -> None:
        """Poll ``target`` too, from now on (a device found after start, e.g. once its SunSpec
        model chain could be read)."""
        if target.name in self._devices:
            raise ValueError(f"device {target.name!r}: name: used twice")
        dev = self._devices[target.name] = _Device(target, self.pool.get(target.host, target.port))
        if self._started and not self._stopping:
            self._tasks.append(asyncio.create_task(self._loop(dev, 0.0), name=f"poll {target.name}"))

    def utc(self, t_s: float | None = None) -> datetime:
        """The UTC time of clock reading ``t_s`` (default: now)."""
        return self._epoch + timedelta(seconds=self.clock() if t_s is None else t_s)

    # -- lifecycle ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start one polling task per device (call inside a running event loop)."""
        if self._started:
            return
        self._started = True
        self._stopping = False
        count = len(self._devices)
        self._tasks = [
            asyncio.create_task(self._loop(d, i / count if self.spread else 0.0), name=f"poll {n}")
            for i, (n, d) in enumerate(self._devices.items())
        ]

    async def stop(self) -> None:
        self._stopping = True
        pending = set(self._tasks)
        while pending:
            # Python 3.11's asyncio.wait_for can swallow a cancellation that races with its
            # inner result: cancel again until every polling task has really ended
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.5)
        self._tasks = []
        self._started = False
        if self._own_pool:
            self.pool.close()

    async def __aenter__(self) -> Poller:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _loop(self, dev: _Device, phase: float) -> None:
        interval = dev.target.interval_s
        due = self.clock() + phase * interval
        await self.sleep(due - self.clock())
        while not self._stopping:
            try:
                await self._poll(dev)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop must survive anything a poll may raise
                dev.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("device %s: poll failed", dev.target.name)
            due += interval
            now = self.clock()
            if due < now:  # a late poll skips the missed slots instead of bursting
                due = now
            await self.sleep(due - now)

    # -- polling -------------------------------------------------------------------------------------

    async def poll_once(self, name: str) -> PollResult:
        """Poll device ``name`` now; returns its latest view (as :meth:`latest`)."""
        dev = self._device(name)
        await self._poll(dev)
        return self.latest(name)

    async def _poll(self, dev: _Device) -> None:
        started = self.clock()
        answered: list[tuple[ReadBlock, Sequence[int]]] = []
        refused: dict[str, Reading] = {}
        lost: dict[str, Reading] = {}
        for block in dev.blocks:
            try:
                registers = await dev.transport.read(block.table, block.start, block.count, dev.unit_id)
            except TransportError as exc:
                target = refused if exc.exception_code is not None else lost
                for name in block.points:
                    target[name] = Reading(None, dev.target.profile.points[name].unit, f"error: {exc.reason}")
                dev.stats.last_error = exc.reason
                continue
            answered.append((block, registers))
        try:
            readings = decode_reads(dev.target.profile, answered)
        except ValueError as exc:
            readings = {name: Reading(None, dev.target.profile.points[name].unit, f"error: decode: {exc}")
                        for block, _ in answered for name in block.points}
        now = self.clock()
        readings = plausible(dev, readings, self.device_clock())
        readings.update(refused)
        for name, reading in readings.items():
            dev.held[name] = _Held(reading, now if reading.value is not None else None)
        for name, reading in lost.items():
            held = dev.held.get(name)
            if held is None or held.good_at is None:
                dev.held[name] = _Held(reading, None)
        stats = dev.stats
        stats.polls += 1
        stats.latencies.append(now - started)
        dev.polled_at = self.utc(now)
        if refused or lost:
            stats.errors += 1
            stats.consecutive_errors += 1
        else:
            stats.good_polls += 1
            stats.consecutive_errors = 0
        if answered:
            stats.last_good_read_at = now

    # -- results -------------------------------------------------------------------------------------

    def _device(self, name: str) -> _Device:
        if name not in self._devices:
            raise KeyError(f"device {name!r}: not polled; polled: {', '.join(self._devices)}")
        return self._devices[name]

    def stats(self, name: str) -> DeviceStats:
        return self._device(name).stats

    def target(self, name: str) -> PollTarget:
        return self._device(name).target

    def latest(self, name: str) -> PollResult:
        """Every point of device ``name`` as last read; a value older than the TTL is missing
        with reason "stale", a point never polled is missing with reason "not polled yet"."""
        dev = self._device(name)
        now = self.clock()
        ttl = dev.target.ttl
        out: dict[str, Reading] = {}
        for block in dev.blocks:
            for point in block.points:
                held = dev.held.get(point)
                unit = dev.target.profile.points[point].unit
                if held is None:
                    out[point] = Reading(None, unit, "not polled yet")
                elif held.good_at is not None and now - held.good_at > ttl:
                    out[point] = Reading(None, unit, STALE)
                else:
                    out[point] = held.reading
        return PollResult(out, dev.polled_at or self.utc(now))

    def reading(self, name: str) -> CapabilityReading | None:
        """The capability reading of the latest view (None when the profile has no mapping)."""
        dev = self._device(name)
        if not dev.has_mapping:
            return None
        return to_capability(dev.target.profile, self.latest(name))
