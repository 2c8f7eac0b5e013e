"""Guarded setpoint writes: clamping, deadband, rate limit, keep-alive, read-back and flash budgets.

:class:`SafeWriter` sits between a controller and a :class:`~drivers.modbus.transport.ModbusTcpTransport`
for one device. Every call returns a :class:`WriteOutcome`; nothing is raised for device or
transport problems.

Rules, per command of the profile:

- the requested value is clamped to the intersection of the command's ``limits`` and the caller's
  ``config_min``/``config_max``; commands named in ``never_zero`` never receive 0 (on some
  inverters a PV limit of 0 % means standby), they get the smallest positive step instead;
- a value within ``deadband`` of the last value the device accepted is not written again, unless
  a keep-alive is due;
- writes closer together than ``min_interval_s`` are skipped, unless a keep-alive is due (the
  device watchdog wins over the rate limit);
- the keep-alive period is the profile's ``keepalive_s`` (already half the device watchdog),
  optionally shortened by the ``keepalive_s`` argument; :meth:`SafeWriter.keepalive` re-writes
  the last value of every command that is due;
- multi-register values go out in one FC16 request;
- with ``readback``, the register is read after ``processing_delay_s``; a difference raises an
  :class:`Alarm` and is not retried at once (the next :meth:`SafeWriter.write` writes again);
- flash-backed commands are refused after ``write_budget_per_day`` writes in a rolling 24 h; the
  alarm is raised once per refusal period.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from drivers.modbus.codec import (
    MAX_SCALE_FACTOR_EXPONENT,
    Missing,
    RegisterSpec,
    decode,
    encode,
    is_integer_type,
    raw_range,
)
from drivers.modbus.profile import Command, Profile
from drivers.modbus.transport import Table, TransportError

DAY_S = 24 * 3600.0

ReadbackStatus = Literal["readback_ok", "readback_mismatch", "readback_skipped"]


class WriteTransport(Protocol):
    """What :class:`SafeWriter` needs from a transport (``ModbusTcpTransport`` provides it)."""

    async def write_registers(self, address: int, values: Sequence[int], unit_id: int) -> None: ...

    async def write_register(self, address: int, value: int, unit_id: int) -> None: ...

    async def read(self, table: Table, address: int, count: int, unit_id: int) -> list[int]: ...


@dataclass(frozen=True)
class Alarm:
    """A write that did not take effect as intended (``got`` is None when nothing was read)."""

    command: str
    wanted: float
    got: float | None
    time: float
    reason: str = ""


@dataclass(frozen=True)
class WriteOutcome:
    """What :meth:`SafeWriter.write` did.

    ``value`` is the value after clamping (None when none could be formed). Exactly one of
    ``written``, ``skipped_deadband``, ``skipped_rate_limit``, ``refused_budget`` is true unless
    ``error`` is set before anything was sent. ``error`` is also set, with ``written`` true, when
    the write went out but its read-back could not be done.
    """

    command: str
    requested: float
    value: float | None = None
    written: bool = False
    keepalive: bool = False
    skipped_deadband: bool = False
    skipped_rate_limit: bool = False
    refused_budget: bool = False
    clamped_from: float | None = None
    readback: ReadbackStatus = "readback_skipped"
    readback_value: float | None = None
    error: str | None = None


@dataclass
class _State:
    value: float | None = None
    """Last value sent (or about to be sent) to the device."""
    in_sync: bool = False
    """The last write succeeded and its read-back, if any, matched."""
    attempted_at: float | None = None
    written_at: float | None = None
    flash_writes: deque[float] = field(default_factory=deque)
    budget_alarmed: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class SafeWriter:
    def __init__(
        self,
        profile: Profile,
        transport: WriteTransport,
        unit_id: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        deadband: Mapping[str, float] | None = None,
        min_interval_s: Mapping[str, float] | None = None,
        keepalive_s: Mapping[str, float] | None = None,
        never_zero: Collection[str] = (),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.profile = profile
        self.transport = transport
        self.unit_id = unit_id
        self.clock = clock
        self.sleep = sleep
        self.deadband = dict(deadband or {})
        self.min_interval_s = dict(min_interval_s or {})
        self.never_zero = frozenset(never_zero)
        self.alarms: list[Alarm] = []
        for what, names in (
            ("deadband", self.deadband),
            ("min_interval_s", self.min_interval_s),
            ("keepalive_s", keepalive_s or {}),
            ("never_zero", self.never_zero),
        ):
            unknown = set(names) - set(profile.commands)
            if unknown:
                raise ValueError(f"{profile.name}: {what}: no such command(s): {', '.join(sorted(unknown))}")
        for what, mapping in (("deadband", self.deadband), ("min_interval_s", self.min_interval_s)):
            for name, v in mapping.items():
                if not (math.isfinite(v) and v >= 0):
                    raise ValueError(f"{profile.name}: {what}[{name}] must be >= 0, got {v!r}")
        self._keepalive: dict[str, float] = {}
        for name, command in profile.commands.items():
            period = command.keepalive_s
            override = (keepalive_s or {}).get(name)
            if override is not None:
                if not (math.isfinite(override) and override > 0):
                    raise ValueError(f"{profile.name}: keepalive_s[{name}] must be > 0, got {override!r}")
                if command.flash_backed:
                    raise ValueError(f"{profile.name}: keepalive_s[{name}]: command is flash-backed")
                period = override if period is None else min(period, override)
            if period is not None:
                self._keepalive[name] = period
        self._states: dict[str, _State] = {}

    # -- public ---------------------------------------------------------------------------------------

    def keepalive_period(self, name: str) -> float | None:
        """Seconds between keep-alive writes of ``name`` (None: not kept alive)."""
        return self._keepalive.get(name)

    def due_keepalives(self) -> list[str]:
        """Commands whose last value must be re-written now to keep the device watchdog fed."""
        now = self.clock()
        return [name for name in self._keepalive if self._keepalive_due(name, now)]

    async def keepalive(self) -> list[WriteOutcome]:
        """Re-write the last value of every command that is due; one outcome per command."""
        outcomes: list[WriteOutcome] = []
        for name in self.due_keepalives():
            value = self._state(name).value
            if value is not None:
                outcomes.append(await self.write(name, value))
        return outcomes

    async def write(
        self,
        command_name: str,
        value: float,
        *,
        config_min: float | None = None,
        config_max: float | None = None,
    ) -> WriteOutcome:
        """Write ``value`` to ``command_name`` if the rules allow it; never raises for device faults."""
        command = self.profile.commands.get(command_name)
        if command is None:
            return WriteOutcome(command_name, value, error=f"no such command {command_name!r}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return WriteOutcome(command_name, value, error=f"value {value!r} is not a finite number")
        target, clamped, problem = self._clamp(command_name, command, float(value), config_min, config_max)
        if target is None:
            return WriteOutcome(command_name, value, error=problem)
        clamped_from = float(value) if clamped else None
        state = self._state(command_name)
        async with state.lock:
            return await self._write_locked(command_name, command, state, value, target, clamped_from)

    async def ensure(self, command_name: str, value: float) -> WriteOutcome:
        """Make the device hold ``value`` in ``command_name``: read the register first and write
        only when it differs (a flash-backed configuration is not rewritten on every start).
        Held already: an outcome with ``skipped_deadband`` and the value read back."""
        command = self.profile.commands.get(command_name)
        if command is None:
            return WriteOutcome(command_name, value, error=f"no such command {command_name!r}")
        spec = self.profile.command_spec(command_name)
        try:
            registers = await self.transport.read("holding", command.address, command.width, self.unit_id)
        except TransportError as exc:
            return WriteOutcome(command_name, value, error=f"read before write failed: {exc.reason}")
        except Exception as exc:  # a transport must not take the controller down
            reason = f"read before write failed: {type(exc).__name__}: {exc}"
            return WriteOutcome(command_name, value, error=reason)
        held = decode(registers, spec)
        expected = decode(encode(value, spec), spec)
        if (isinstance(held, int | float) and isinstance(expected, int | float)
                and math.isclose(float(held), float(expected), rel_tol=1e-6, abs_tol=1e-9)):
            state = self._state(command_name)
            state.value, state.in_sync = float(value), True
            return WriteOutcome(command_name, value, value=float(value), skipped_deadband=True,
                                readback="readback_ok", readback_value=float(held))
        return await self.write(command_name, value)

    # -- rules ----------------------------------------------------------------------------------------

    def _state(self, name: str) -> _State:
        state = self._states.get(name)
        if state is None:
            state = self._states[name] = _State()
        return state

    def _keepalive_due(self, name: str, now: float) -> bool:
        period = self._keepalive.get(name)
        state = self._states.get(name)
        if period is None or state is None or state.value is None:
            return False
        return state.written_at is None or now - state.written_at >= period

    def _step(self, command: Command) -> float:
        """The smallest positive value the command can carry (one raw step, or 1 for floats)."""
        return abs(command.scale) if command.scale is not None else 1.0

    def _clamp(
        self,
        name: str,
        command: Command,
        value: float,
        config_min: float | None,
        config_max: float | None,
    ) -> tuple[float | None, bool, str]:
        """The value to send, whether limits or ``never_zero`` changed it, and why there is none."""
        spec = self.profile.command_spec(name)
        if command.limits is not None:
            lo, hi = command.limits
        else:
            raw_lo, raw_hi = raw_range(command.type)
            scale = 1.0 if command.scale is None else command.scale
            lo, hi = sorted((raw_lo * scale, raw_hi * scale))
        if config_min is not None:
            lo = max(lo, config_min)
        if config_max is not None:
            hi = min(hi, config_max)
        if lo > hi:
            reason = f"config limits [{config_min}, {config_max}] leave no value within the command limits"
            return None, False, reason
        target = min(max(value, lo), hi)
        clamped = target != value
        if is_integer_type(command.type):
            # What the device will actually receive, so that never_zero sees a rounded-down 0.
            step = self._step(command)
            target = min(max(round(target / step) * step, lo), hi)
        if name in self.never_zero and target == 0:
            smallest = max(lo, self._step(command)) if lo <= 0 else lo
            if is_integer_type(command.type):
                step = self._step(command)
                smallest = math.ceil(smallest / step - 1e-9) * step
            if smallest > hi or smallest <= 0:
                return None, False, f"0 is not allowed and no positive value fits [{lo:g}, {hi:g}]"
            target, clamped = smallest, True
        try:
            encode(target, spec)
        except ValueError as exc:
            return None, False, str(exc)
        return target, clamped, ""

    async def _write_locked(
        self,
        name: str,
        command: Command,
        state: _State,
        requested: float,
        target: float,
        clamped_from: float | None,
    ) -> WriteOutcome:
        now = self.clock()
        base = WriteOutcome(name, requested, value=target, clamped_from=clamped_from)
        keepalive_due = self._keepalive_due(name, now)
        if (
            not keepalive_due
            and state.in_sync
            and state.value is not None
            and abs(target - state.value) <= self.deadband.get(name, 0.0)
        ):
            return replace(base, skipped_deadband=True)
        interval = self.min_interval_s.get(name, 0.0)
        if (
            not keepalive_due
            and interval > 0
            and state.attempted_at is not None
            and now - state.attempted_at < interval
        ):
            return replace(base, skipped_rate_limit=True)
        if command.flash_backed and command.write_budget_per_day is not None:
            while state.flash_writes and now - state.flash_writes[0] >= DAY_S:
                state.flash_writes.popleft()
            if len(state.flash_writes) >= command.write_budget_per_day:
                if not state.budget_alarmed:
                    state.budget_alarmed = True
                    self.alarms.append(
                        Alarm(
                            name,
                            target,
                            None,
                            now,
                            f"flash write budget of {command.write_budget_per_day} per 24 h used up",
                        )
                    )
                return replace(base, refused_budget=True)
            state.budget_alarmed = False

        spec = self.profile.command_spec(name)
        try:
            spec = await self._current_spec(command, spec)
            registers = encode(target, spec)
        except TransportError as exc:
            return replace(base, error=f"scale factor not read: {exc.reason}")
        except ValueError as exc:
            return replace(base, error=str(exc))
        state.value = target
        state.in_sync = False
        state.attempted_at = now
        if command.flash_backed:
            # Counted when sent: a write that timed out may still have reached the flash.
            state.flash_writes.append(now)
        try:
            if command.transactional:
                problem = await self._write_transaction(name, command, target, registers)
                if problem is not None:
                    return replace(base, error=problem)
            elif command.encoding == "write_single":
                await self.transport.write_register(command.address, registers[0], self.unit_id)
            else:
                await self.transport.write_registers(command.address, registers, self.unit_id)
        except TransportError as exc:
            return replace(base, error=exc.reason)
        except Exception as exc:  # a transport must not take the controller down
            return replace(base, error=f"{type(exc).__name__}: {exc}")
        state.written_at = self.clock()
        written = replace(base, written=True, keepalive=keepalive_due)
        if not command.readback:
            state.in_sync = True
            return written
        return await self._read_back(name, command, state, target, written, spec)

    async def _current_spec(self, command: Command, spec: RegisterSpec) -> RegisterSpec:
        """``spec`` with the scale the device uses now: a command with a scale-factor register has
        it read again (ValueError when the device reports none or an absurd one)."""
        if command.scale_factor_address is None:
            return spec
        raw = (await self.transport.read("holding", command.scale_factor_address, 1, self.unit_id))[0]
        if raw == 0x8000:
            raise ValueError(f"scale factor at {command.scale_factor_address} is not implemented (0x8000)")
        exponent = raw - 0x10000 if raw >= 0x8000 else raw
        if abs(exponent) > MAX_SCALE_FACTOR_EXPONENT:
            raise ValueError(f"scale factor at {command.scale_factor_address}: {exponent} out of range")
        return replace(spec, scale=None if exponent == 0 else 10.0**exponent)

    async def _write_transaction(
        self, name: str, command: Command, target: float, registers: list[int]
    ) -> str | None:
        """Begin, write, commit, then read the device's result code. A failure after the begin
        rolls the transaction back (best effort). Returns a problem or None."""
        tx = self.profile.transaction
        assert tx is not None  # checked when the profile was loaded
        await self.transport.write_register(tx.begin_address, tx.begin_value, self.unit_id)
        try:
            await self.transport.write_registers(command.address, registers, self.unit_id)
        except TransportError:
            with contextlib.suppress(TransportError):
                await self.transport.write_register(tx.commit_address, tx.rollback_value, self.unit_id)
            raise
        await self.transport.write_register(tx.commit_address, tx.commit_value, self.unit_id)
        result = (await self.transport.read(tx.result_table, tx.result_address, 1, self.unit_id))[0]
        if tx.success_values and result not in tx.success_values:
            reason = f"configuration transaction result {result} (success: {tx.success_values})"
            self.alarms.append(Alarm(name, target, None, self.clock(), reason))
            return reason
        return None

    async def _read_back(
        self, name: str, command: Command, state: _State, target: float, written: WriteOutcome,
        spec: RegisterSpec,
    ) -> WriteOutcome:
        expected = decode(encode(target, spec), spec)
        try:
            await self.sleep(command.processing_delay_s)
            registers = await self.transport.read("holding", command.address, command.width, self.unit_id)
        except TransportError as exc:
            reason = f"read-back failed: {exc.reason}"
            self.alarms.append(Alarm(name, target, None, self.clock(), reason))
            return replace(written, error=reason)
        except Exception as exc:
            reason = f"read-back failed: {type(exc).__name__}: {exc}"
            self.alarms.append(Alarm(name, target, None, self.clock(), reason))
            return replace(written, error=reason)
        got = decode(registers, spec)
        got_value = None if isinstance(got, Missing | str) else float(got)
        if (
            got_value is not None
            and isinstance(expected, int | float)
            and math.isclose(got_value, float(expected), rel_tol=1e-6, abs_tol=1e-9)
        ):
            state.in_sync = True
            return replace(written, readback="readback_ok", readback_value=got_value)
        self.alarms.append(Alarm(name, target, got_value, self.clock(), "read-back differs from the write"))
        return replace(written, readback="readback_mismatch", readback_value=got_value)
