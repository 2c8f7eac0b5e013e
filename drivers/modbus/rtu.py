"""Modbus RTU transport: one pymodbus serial client per serial port, shared by every unit id on
the bus.

Same interface as :class:`~drivers.modbus.transport.ModbusTcpTransport` (read, write_registers,
write_register, stats, backoff, :class:`~drivers.modbus.transport.TransportError`). ``port`` is a
device path (``/dev/ttyUSB0``) or any pyserial URL, e.g. ``socket://host:port`` for an RTU-over-TCP
gateway (RTU frames with CRC, no MBAP header). Needs pyserial (``pymodbus[serial]``).

RTU frames carry no transaction id: a reply that comes after its request timed out looks exactly
like the answer to the next request. So after a timeout the line is flushed before anything else is
sent: bytes are discarded until the line has been quiet for ``quiet_s`` (default: the timeout),
and the late reply is counted in ``late_replies``; the timed-out read stays missing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.client.base import ModbusBaseClient

from drivers.modbus.transport import ModbusTransport

Parity = Literal["N", "E", "O"]


@dataclass(frozen=True)
class SerialLine:
    """Serial line settings: ``baudrate`` in bit/s, ``parity`` N/E/O, ``stopbits`` 1 or 2,
    ``bytesize`` 7 or 8 data bits. Modbus RTU's default is 19200 8E1; many devices ship 9600 8N1."""

    baudrate: int = 19200
    parity: Parity = "E"
    stopbits: int = 1
    bytesize: int = 8

    def __post_init__(self) -> None:
        if self.baudrate <= 0:
            raise ValueError(f"baudrate: must be > 0, got {self.baudrate!r}")
        if self.parity not in ("N", "E", "O"):
            raise ValueError(f"parity: must be 'N', 'E' or 'O', got {self.parity!r}")
        if self.stopbits not in (1, 2):
            raise ValueError(f"stopbits: must be 1 or 2, got {self.stopbits!r}")
        if self.bytesize not in (7, 8):
            raise ValueError(f"bytesize: must be 7 or 8, got {self.bytesize!r}")

    def __str__(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


class ModbusRtuTransport(ModbusTransport):
    """One Modbus RTU serial link (``port``) with ``line`` settings."""

    def __init__(
        self,
        port: str,
        line: SerialLine | None = None,
        timeout_s: float = 1.0,
        backoff_max_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        backoff_initial_s: float = 0.5,
        quiet_s: float | None = None,
        max_flush_s: float = 10.0,
    ) -> None:
        """``quiet_s``: silence (wall seconds) that ends a flush after a timeout (default
        ``timeout_s``); ``max_flush_s``: a line that keeps talking longer than this is given up
        on (the flush ends and the next reply is taken as usual)."""
        super().__init__(timeout_s, backoff_max_s, clock, backoff_initial_s)
        if not port:
            raise ValueError(f"port: a serial device or pyserial URL is required, got {port!r}")
        self.port = port
        self.line = line or SerialLine()
        self.endpoint = f"{port} ({self.line})"
        self.quiet_s = timeout_s if quiet_s is None else quiet_s
        self.max_flush_s = max_flush_s
        self.late_replies = 0
        """Flushes after a timeout that discarded bytes (a late reply, or noise)."""
        self._flush_pending = False
        self._received = 0
        """Receive events seen on the line (any bytes from the device)."""

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._received += 1
        return data

    def _after_timeout(self, client: ModbusBaseClient) -> None:
        self._flush_pending = True

    async def _before_request(self, client: ModbusBaseClient) -> None:
        if not self._flush_pending:
            return
        self._flush_pending = False
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.max_flush_s
        seen = self._received
        discarded = False
        while True:
            # pymodbus ignores a frame that arrives with no request outstanding
            await asyncio.sleep(self.quiet_s)
            if self._received == seen or loop.time() >= give_up_at:
                break
            seen = self._received
            discarded = True
        if discarded:
            self.late_replies += 1
        client.ctx.recv_buffer = b""

    def _new_client(self) -> ModbusBaseClient:
        # reconnect_delay=0 turns pymodbus's own reconnect off: reconnecting is done by the base class.
        return AsyncModbusSerialClient(
            self.port,
            framer=FramerType.RTU,
            baudrate=self.line.baudrate,
            bytesize=self.line.bytesize,
            parity=self.line.parity,
            stopbits=self.line.stopbits,
            timeout=self.timeout_s,
            retries=0,
            reconnect_delay=0,
            trace_packet=self._trace_packet,
        )
