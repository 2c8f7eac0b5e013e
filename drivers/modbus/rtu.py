"""Modbus RTU transport: one pymodbus serial client per serial port, shared by every unit id on
the bus.

Same interface as :class:`~drivers.modbus.transport.ModbusTcpTransport` (read, write_registers,
write_register, stats, backoff, :class:`~drivers.modbus.transport.TransportError`). ``port`` is a
device path (``/dev/ttyUSB0``) or any pyserial URL, e.g. ``socket://host:port`` for an RTU-over-TCP
gateway (RTU frames with CRC, no MBAP header). Needs pyserial (``pymodbus[serial]``).
"""

from __future__ import annotations

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
    ) -> None:
        super().__init__(timeout_s, backoff_max_s, clock, backoff_initial_s)
        if not port:
            raise ValueError(f"port: a serial device or pyserial URL is required, got {port!r}")
        self.port = port
        self.line = line or SerialLine()
        self.endpoint = f"{port} ({self.line})"

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
        )
