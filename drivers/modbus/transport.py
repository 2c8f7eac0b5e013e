"""Modbus transports: one pymodbus client per link (host:port, or serial port), shared by every
unit id behind it.

:class:`ModbusTransport` holds the request, error and backoff logic; a subclass only says how to
build its pymodbus client (:class:`ModbusTcpTransport` here, ``drivers.modbus.rtu`` for serial
RTU). Every failure surfaces as :class:`TransportError`. A lost or refused connection is retried
on a later request, no earlier than a capped exponential backoff allows.

Backoff is per unit as well as per link: a unit id that does not answer is not asked again before
its own backoff has passed (requests for it fail fast meanwhile). The backoff doubles (up to
``backoff_max_s``) while other units of the link keep answering, so a dead unit behind a gateway
costs its healthy neighbours one timeout now and then, not one per poll; a unit alone on its link,
or a whole link gone silent, stays at the first step and comes back promptly. When the whole link
was silent (several timeouts in a row) and a unit answers again, every unit's backoff is cleared.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ConnectionException, ModbusIOException

Table = Literal["holding", "input"]

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}

MAX_READ = 125
MAX_WRITE = 123
MAX_CONSECUTIVE_TIMEOUTS = 3
LATENCY_WINDOW = 100


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank (None when there are none)."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


ErrorKind = Literal["timeout", "closed", "exception", "length", "backoff", "connect", "other"]


class TransportError(Exception):
    """A request failed; ``reason`` says why in one line, ``kind`` classifies it: no answer in time
    (timeout), link closed or reset by the peer (closed), a Modbus exception answer (exception), a
    reply of the wrong length (length), not sent because the link or unit is backing off (backoff),
    no connection (connect), anything else (other)."""

    def __init__(self, reason: str, exception_code: int | None = None, kind: ErrorKind | None = None) -> None:
        self.reason = reason
        self.exception_code = exception_code
        self.kind: ErrorKind = kind or ("exception" if exception_code is not None else "other")
        super().__init__(reason)


@dataclass
class TransportStats:
    requests: int = 0
    errors: int = 0
    last_error: str | None = None
    last_good_read_at: float | None = None
    latency_last_s: float | None = None
    connects: int = 0
    connect_failures: int = 0
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    """Failed requests by TransportError kind (timeout, closed, exception, length, backoff...)."""
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    @property
    def latency_p50_s(self) -> float | None:
        return percentile(self.latencies, 0.50)

    @property
    def latency_p99_s(self) -> float | None:
        return percentile(self.latencies, 0.99)


@dataclass
class UnitState:
    """One unit id on a shared link: its answers, timeouts and backoff (clock seconds)."""

    answers: int = 0
    timeouts: int = 0
    consecutive_timeouts: int = 0
    skipped: int = 0
    """Requests refused without going on the wire while the unit was backing off."""
    backoff_s: float = 0.0
    next_attempt_at: float | None = None
    link_answers_at_timeout: int = 0
    """The link's answer count at this unit's last timeout."""

    @property
    def backing_off(self) -> bool:
        return self.next_attempt_at is not None


@dataclass(frozen=True)
class TraceEvent:
    """One request on a link and how it ended: ``started_s`` (transport clock) and ``duration_s``
    (seconds), the reply's registers for a read, or the error (``kind`` as in TransportError)."""

    what: str
    unit_id: int
    started_s: float
    duration_s: float
    registers: tuple[int, ...] | None = None
    error: str | None = None
    kind: str | None = None


def exception_reason(code: int) -> str:
    name = EXCEPTION_NAMES.get(code, "unknown")
    return f"modbus exception {code} ({name})"


class ModbusTransport:
    """One Modbus link; safe to share between devices (requests are serialised).

    Subclasses implement :meth:`_new_client` (a disconnected pymodbus async client) and set
    ``endpoint`` (the link's name in error messages).
    """

    endpoint: str

    def __init__(
        self,
        timeout_s: float = 1.0,
        backoff_max_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        backoff_initial_s: float = 0.5,
    ) -> None:
        if timeout_s <= 0 or backoff_max_s < 0 or backoff_initial_s < 0:
            raise ValueError("timeout_s must be > 0 and backoff times >= 0")
        self.timeout_s = timeout_s
        self.backoff_max_s = backoff_max_s
        self.backoff_initial_s = min(backoff_initial_s, backoff_max_s)
        self.clock = clock
        self.stats = TransportStats()
        self._client: ModbusBaseClient | None = None
        self._connect_lock = asyncio.Lock()
        # one request at a time per connection: a poll and a write of the same device (or two
        # devices behind one gateway) must not interleave on the socket
        self._request_lock = asyncio.Lock()
        self._backoff_s = 0.0
        self._next_attempt_at: float | None = None
        self._consecutive_timeouts = 0
        self._timeouts_since_answer = 0
        """Timeouts on this link since any unit last answered (not reset by a reconnect)."""
        self.units: dict[int, UnitState] = {}
        self._answers = 0
        """Answers (of any unit) on this link."""
        self.trace: Callable[[TraceEvent], None] | None = None
        """Called after every request with what was asked and how it ended (``ems device trace``)."""

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    @property
    def next_attempt_at(self) -> float | None:
        """Clock time before which no reconnect is attempted (None: no backoff pending)."""
        return self._next_attempt_at

    def unit_state(self, unit_id: int) -> UnitState:
        """Backoff state and counters of ``unit_id`` on this link."""
        state = self.units.get(unit_id)
        if state is None:
            state = self.units[unit_id] = UnitState()
        return state

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def diagnostics(self) -> dict[str, Any]:
        """The link's counters and backoff state, and each unit's, as plain data (seconds of the
        transport clock; ``retry_in_s`` is None when no backoff is pending)."""
        now = self.clock()

        def wait(at: float | None) -> float | None:
            return None if at is None else round(max(0.0, at - now), 3)

        st = self.stats
        return {
            "endpoint": self.endpoint,
            "connected": self.connected,
            "requests": st.requests,
            "errors": st.errors,
            "errors_by_kind": dict(st.errors_by_kind),
            "connects": st.connects,
            "connect_failures": st.connect_failures,
            "latency_p50_s": st.latency_p50_s,
            "latency_p99_s": st.latency_p99_s,
            "reconnect_in_s": wait(self._next_attempt_at),
            "units": {
                unit: {"answers": u.answers, "timeouts": u.timeouts, "skipped": u.skipped,
                       "backoff_s": u.backoff_s, "retry_in_s": wait(u.next_attempt_at)}
                for unit, u in sorted(self.units.items())
            },
        }

    # -- connection -----------------------------------------------------------------------------

    def _new_client(self) -> ModbusBaseClient:
        """A new, not yet connected pymodbus client with its own retries and reconnect turned off."""
        raise NotImplementedError

    def _mark_disconnected(self) -> None:
        """Close the link and back off: ``backoff_initial_s`` after a link that was up, doubling
        (up to ``backoff_max_s``) with each failed connect after that."""
        self.close()
        self._backoff_s = (
            self.backoff_initial_s if self._backoff_s == 0 else min(2 * self._backoff_s, self.backoff_max_s)
        )
        self._next_attempt_at = self.clock() + self._backoff_s

    async def _ensure_connected(self) -> ModbusBaseClient:
        async with self._connect_lock:
            if self._client is not None and self._client.connected:
                return self._client
            self.close()
            now = self.clock()
            if self._next_attempt_at is not None and now < self._next_attempt_at:
                raise TransportError(
                    f"not connected to {self.endpoint}; reconnect in {self._next_attempt_at - now:.2f} s",
                    kind="backoff",
                )
            client = self._new_client()
            try:
                ok = await asyncio.wait_for(client.connect(), self.timeout_s + 0.5)
            except (TimeoutError, OSError, ConnectionException):
                ok = False
            if not ok or not client.connected:
                client.close()
                self.stats.connect_failures += 1
                self._mark_disconnected()
                raise TransportError(f"cannot connect to {self.endpoint}", kind="connect")
            self.stats.connects += 1
            self._client = client
            self._backoff_s = 0.0
            self._next_attempt_at = None
            self._consecutive_timeouts = 0
            return client

    async def _before_request(self, client: ModbusBaseClient) -> None:
        """Hook run on the connected link, under the request lock, before each request."""

    def _after_timeout(self, client: ModbusBaseClient) -> None:
        """Hook run when a request on a still connected link got no answer in time."""

    # -- per-unit backoff --------------------------------------------------------------------------

    def _check_unit(self, unit_id: int, what: str) -> None:
        """Fail fast while ``unit_id`` is backing off after timeouts (its neighbours on the link
        are not held up by re-polling it)."""
        state = self.units.get(unit_id)
        now = self.clock()
        if state is not None and state.next_attempt_at is not None and now < state.next_attempt_at:
            state.skipped += 1
            raise TransportError(
                f"{what}: unit {unit_id} not answering ({state.consecutive_timeouts} timeouts in a row); "
                f"retry in {state.next_attempt_at - now:.2f} s",
                kind="backoff",
            )

    def _unit_timed_out(self, unit_id: int) -> None:
        state = self.unit_state(unit_id)
        state.timeouts += 1
        state.consecutive_timeouts += 1
        # the backoff doubles only when another unit answered since this one last timed out: then
        # the unit is dead, not the link; a silent link (or a unit alone on it) keeps the first step
        neighbours_answered = self._answers > state.link_answers_at_timeout
        if state.backoff_s == 0 or not neighbours_answered:
            state.backoff_s = self.backoff_initial_s
        else:
            state.backoff_s = min(2 * state.backoff_s, self.backoff_max_s)
        state.link_answers_at_timeout = self._answers
        state.next_attempt_at = self.clock() + state.backoff_s

    def _unit_answered(self, unit_id: int) -> None:
        state = self.unit_state(unit_id)
        state.answers += 1
        self._answers += 1
        state.consecutive_timeouts = 0
        state.backoff_s = 0.0
        state.next_attempt_at = None
        if self._timeouts_since_answer >= MAX_CONSECUTIVE_TIMEOUTS:
            # the whole link was silent and now answers again: the other units' timeouts were
            # the link's, not theirs, so they are tried again now rather than after their backoff
            for other in self.units.values():
                other.consecutive_timeouts = 0
                other.backoff_s = 0.0
                other.next_attempt_at = None
        self._timeouts_since_answer = 0

    # -- requests ---------------------------------------------------------------------------------

    async def _request(self, what: str, unit_id: int, call: Callable[[ModbusBaseClient], Any]) -> Any:
        if self.trace is None:
            return await self._untraced(what, unit_id, call)
        started = self.clock()
        try:
            response = await self._untraced(what, unit_id, call)
        except TransportError as exc:
            duration = self.clock() - started
            self.trace(TraceEvent(what, unit_id, started, duration, error=exc.reason, kind=exc.kind))
            raise
        registers = getattr(response, "registers", None)
        self.trace(TraceEvent(what, unit_id, started, self.clock() - started,
                              registers=None if registers is None else tuple(registers)))
        return response

    async def _untraced(self, what: str, unit_id: int, call: Callable[[ModbusBaseClient], Any]) -> Any:
        self.stats.requests += 1
        try:
            self._check_unit(unit_id, what)  # a unit backing off does not even queue for the link
            # The lock is taken before the link is checked: a request queued behind one that
            # dropped the link sees the backoff (and fails fast) instead of failing on the closed
            # client and backing off again.
            async with self._request_lock:
                self._check_unit(unit_id, what)
                client = await self._ensure_connected()
                return await self._exchange(what, unit_id, client, call)
        except TransportError as exc:
            self._record_error(exc.reason, exc.kind)
            raise
        except Exception as exc:  # anything pymodbus may raise becomes a TransportError
            reason = f"{what}: {type(exc).__name__}: {exc}"
            self._record_error(reason, "other")
            if self._client is not None and not self._client.connected:
                self._mark_disconnected()
            raise TransportError(reason) from None

    async def _exchange(
        self, what: str, unit_id: int, client: ModbusBaseClient, call: Callable[[ModbusBaseClient], Any]
    ) -> Any:
        await self._before_request(client)
        started = self.clock()
        try:
            response = await asyncio.wait_for(call(client), 2 * self.timeout_s + 0.5)
        except (TimeoutError, ModbusIOException) as exc:
            if isinstance(exc, ModbusIOException) and not self._is_timeout(exc):
                raise TransportError(f"{what}: i/o error: {exc}") from None
            if not client.connected:
                # the peer closed or reset the link while the request was out
                self._mark_disconnected()
                raise TransportError(f"{what}: connection closed by {self.endpoint}", kind="closed") from None
            self._consecutive_timeouts += 1
            self._timeouts_since_answer += 1
            self._unit_timed_out(unit_id)
            self._after_timeout(client)
            if self._consecutive_timeouts >= MAX_CONSECUTIVE_TIMEOUTS:
                self._mark_disconnected()
            raise TransportError(
                f"{what}: timeout, no response within {self.timeout_s:g} s", kind="timeout"
            ) from None
        except (ConnectionException, OSError) as exc:
            self._mark_disconnected()
            raise TransportError(f"{what}: connection lost: {exc}", kind="closed") from None
        self._consecutive_timeouts = 0
        self._unit_answered(unit_id)
        if response.isError():
            code = int(getattr(response, "exception_code", 0))
            raise TransportError(f"{what}: {exception_reason(code)}", exception_code=code)
        latency = self.clock() - started
        self.stats.latency_last_s = latency
        self.stats.latencies.append(latency)
        return response

    @staticmethod
    def _is_timeout(exc: ModbusIOException) -> bool:
        text = str(exc).lower()
        return "no response" in text or "timeout" in text

    def _record_error(self, reason: str, kind: ErrorKind) -> None:
        self.stats.errors += 1
        self.stats.errors_by_kind[kind] += 1
        self.stats.last_error = reason

    async def read(self, table: Table, address: int, count: int, unit_id: int) -> list[int]:
        """Read ``count`` registers (FC3 for holding, FC4 for input)."""
        if not 1 <= count <= MAX_READ or not 0 <= address <= 65536 - count:
            raise TransportError(f"read {table} {address}+{count}: invalid address or count")
        what = f"read {table} {address}+{count} unit {unit_id}"

        def call(client: ModbusBaseClient) -> Any:
            if table == "holding":
                return client.read_holding_registers(address, count=count, device_id=unit_id)
            return client.read_input_registers(address, count=count, device_id=unit_id)

        response = await self._request(what, unit_id, call)
        registers = list(response.registers)
        if len(registers) != count:
            # a reply of another length answers another request: refused, never cut to fit
            reason = f"{what}: reply has {len(registers)} registers, not {count}"
            self._record_error(reason, "length")
            raise TransportError(reason, kind="length")
        self.stats.last_good_read_at = self.clock()
        return registers

    async def write_registers(self, address: int, values: Sequence[int], unit_id: int) -> None:
        """Write ``values`` in one FC16 request."""
        regs = list(values)
        if not 1 <= len(regs) <= MAX_WRITE or not 0 <= address <= 65536 - len(regs):
            raise TransportError(f"write {address}+{len(regs)}: invalid address or count")
        if any(not 0 <= v <= 0xFFFF for v in regs):
            raise TransportError(f"write {address}: register values must be 0..65535")
        what = f"write holding {address}+{len(regs)} unit {unit_id}"
        await self._request(what, unit_id, lambda c: c.write_registers(address, regs, device_id=unit_id))

    async def write_register(self, address: int, value: int, unit_id: int) -> None:
        """Write one register with FC6 (for devices that do not accept FC16)."""
        if not 0 <= address <= 65535:
            raise TransportError(f"write {address}: invalid address")
        if not 0 <= value <= 0xFFFF:
            raise TransportError(f"write {address}: register value must be 0..65535, got {value}")
        what = f"write single holding {address} unit {unit_id}"
        await self._request(what, unit_id, lambda c: c.write_register(address, value, device_id=unit_id))


class ModbusTcpTransport(ModbusTransport):
    """One Modbus TCP connection to ``host``:``port``."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout_s: float = 1.0,
        backoff_max_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        backoff_initial_s: float = 0.5,
    ) -> None:
        super().__init__(timeout_s, backoff_max_s, clock, backoff_initial_s)
        self.host = host
        self.port = port
        self.endpoint = f"{host}:{port}"

    def _new_client(self) -> ModbusBaseClient:
        # reconnect_delay=0 turns pymodbus's own reconnect off: reconnecting is done here.
        return AsyncModbusTcpClient(
            self.host, port=self.port, timeout=self.timeout_s, retries=0, reconnect_delay=0
        )


class TransportPool:
    """Hands out one transport per host:port (TCP) or per serial port (RTU).

    ``options`` (timeout_s, backoff_max_s, clock, backoff_initial_s) apply to every transport.
    """

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._transports: dict[tuple[str, ...], ModbusTransport] = {}

    def get(self, host: str, port: int) -> ModbusTcpTransport:
        key = ("tcp", host, str(port))
        transport = self._transports.get(key)
        if transport is None:
            transport = self._transports[key] = ModbusTcpTransport(host, port, **self._options)
        assert isinstance(transport, ModbusTcpTransport)
        return transport

    def get_serial(self, port: str, **line: Any) -> ModbusTransport:
        """The RTU transport for serial ``port`` (a device path or a pyserial URL).

        ``line`` (baudrate, parity, stopbits, bytesize) is used when the transport is created; asking
        again for the same port with different line settings raises ValueError.
        """
        from drivers.modbus.rtu import ModbusRtuTransport, SerialLine

        key = ("serial", port)
        wanted = SerialLine(**line)
        transport = self._transports.get(key)
        if transport is None:
            transport = self._transports[key] = ModbusRtuTransport(port, wanted, **self._options)
        assert isinstance(transport, ModbusRtuTransport)
        if transport.line != wanted:
            raise ValueError(f"serial port {port}: already open with {transport.line}, got {wanted}")
        return transport

    def transports(self) -> dict[str, ModbusTransport]:
        """Every transport handed out, by endpoint (host:port, or serial port and line)."""
        return {t.endpoint: t for t in self._transports.values()}

    def close(self) -> None:
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()
