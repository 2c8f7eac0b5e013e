"""A Modbus server on TCP that serves a profile's register map, with fault injection.

It speaks FC3 (read holding), FC4 (read input), FC6 (write single) and FC16 (write multiple);
unused registers read 0. Faults (``server.faults``): ``no_answer`` swallows requests, ``delay_s``
delays every answer, ``exception_code`` answers every request with that Modbus exception,
``bad_crc`` (RTU only) corrupts the CRC of every answer.

``framing="tcp"`` (default) is Modbus TCP (MBAP header). ``framing="rtu"`` sends RTU frames over
the TCP stream instead (unit id + PDU + CRC-16/Modbus, low byte first, no MBAP), as an RTU-over-TCP
gateway or a serial line does; a client reaches it with the pyserial URL ``socket://host:port``.
Like a serial slave, it stays silent on a frame with a wrong CRC (counted in ``crc_errors``) or for
another unit id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
from collections import Counter
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from drivers.modbus.codec import encode
from drivers.modbus.profile import Profile, Table

ILLEGAL_FUNCTION = 1
ILLEGAL_DATA_ADDRESS = 2
ILLEGAL_DATA_VALUE = 3
GATEWAY_TARGET_FAILED = 11


@dataclass
class Faults:
    no_answer: bool = False
    delay_s: float = 0.0
    exception_code: int | None = None
    bad_crc: bool = False

    def clear(self) -> None:
        self.no_answer = False
        self.delay_s = 0.0
        self.exception_code = None
        self.bad_crc = False


def crc16(frame: bytes) -> int:
    """CRC-16/Modbus of ``frame`` (polynomial 0xA001 reflected, initial value 0xFFFF)."""
    crc = 0xFFFF
    for byte in frame:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    """An RTU ADU: unit id, PDU, CRC low byte first."""
    body = bytes([unit]) + pdu
    return body + crc16(body).to_bytes(2, "little")


class RegisterServer:
    def __init__(
        self,
        profile: Profile,
        host: str = "127.0.0.1",
        port: int = 0,
        unit_id: int = 1,
        framing: Literal["tcp", "rtu"] = "tcp",
    ) -> None:
        if framing not in ("tcp", "rtu"):
            raise ValueError(f"framing: must be 'tcp' or 'rtu', got {framing!r}")
        self.profile = profile
        self.framing = framing
        self.crc_errors = 0
        """RTU frames dropped because their CRC did not match."""
        self.host = host
        self.port = port
        self.unit_id = unit_id
        self.faults = Faults()
        self.requests: Counter[int] = Counter()
        """Requests received, by function code (including swallowed and refused ones)."""
        self._tables: dict[Table, dict[int, int]] = {"holding": {}, "input": {}}
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    # -- register image ---------------------------------------------------------------------------

    def set_point(self, name: str, value: float | str) -> None:
        """Publish ``value`` (engineering units) in point ``name``'s registers. A point scaled by a
        scale-factor point is encoded with the exponent that point currently holds."""
        point = self.profile.points[name]
        spec = self.profile.point_spec(name)
        if point.scale_factor_point is not None:
            sf_point = self.profile.points[point.scale_factor_point]
            raw = self.get_registers(sf_point.table, sf_point.address, 1)[0]
            exponent = raw - 0x10000 if raw >= 0x8000 else raw
            if raw != 0x8000:
                spec = dataclasses.replace(spec, scale=10.0**exponent)
        self.set_registers(point.table, point.address, encode(value, spec))

    def set_registers(self, table: Table, address: int, values: list[int]) -> None:
        for i, v in enumerate(values):
            self._tables[table][address + i] = v & 0xFFFF

    def get_registers(self, table: Table, address: int, count: int) -> list[int]:
        data = self._tables[table]
        return [data.get(address + i, 0) for i in range(count)]

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self.drop_connections()
            # The handlers end on EOF (or after an injected delay); let them finish rather than
            # leaving them to be cancelled at loop shutdown.
            if self._handlers:
                await asyncio.wait(set(self._handlers), timeout=self.faults.delay_s + 1.0)
            await self._server.wait_closed()
            self._server = None

    def drop_connections(self) -> None:
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def __aenter__(self) -> RegisterServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- protocol -----------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            if self.framing == "rtu":
                await self._serve_rtu(reader, writer)
                return
            while True:
                header = await reader.readexactly(7)
                tid, proto, length, unit = struct.unpack(">HHHB", header)
                if proto != 0 or not 2 <= length <= 254:
                    break
                pdu = await reader.readexactly(length - 1)
                self.requests[pdu[0]] += 1
                if self.faults.no_answer:
                    continue
                if self.faults.delay_s > 0:
                    await asyncio.sleep(self.faults.delay_s)
                answer = self._answer(unit, pdu)
                writer.write(struct.pack(">HHHB", tid, 0, len(answer) + 1, unit) + answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._handlers.discard(task)
            writer.close()

    async def _serve_rtu(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readexactly(2)
            unit, fc = head
            if fc == 16:
                fixed = await reader.readexactly(5)
                rest = fixed + await reader.readexactly(fixed[4] + 2)
            else:  # FC1..6 requests all carry 4 data bytes
                rest = await reader.readexactly(6)
            frame = head + rest
            if crc16(frame[:-2]).to_bytes(2, "little") != frame[-2:]:
                self.crc_errors += 1
                continue
            self.requests[fc] += 1
            if self.faults.no_answer or unit != self.unit_id:
                continue
            if self.faults.delay_s > 0:
                await asyncio.sleep(self.faults.delay_s)
            answer = rtu_frame(unit, self._answer(unit, frame[1:-2]))
            if self.faults.bad_crc:
                answer = answer[:-2] + bytes([answer[-2] ^ 0xFF, answer[-1]])
            writer.write(answer)
            await writer.drain()

    def _answer(self, unit: int, pdu: bytes) -> bytes:
        fc = pdu[0]
        if self.faults.exception_code is not None:
            return bytes([fc | 0x80, self.faults.exception_code])
        if unit != self.unit_id:
            return bytes([fc | 0x80, GATEWAY_TARGET_FAILED])
        try:
            if fc in (3, 4):
                address, count = struct.unpack(">HH", pdu[1:5])
                if not 1 <= count <= 125:
                    return bytes([fc | 0x80, ILLEGAL_DATA_VALUE])
                if address + count > 65536:
                    return bytes([fc | 0x80, ILLEGAL_DATA_ADDRESS])
                regs = self.get_registers("holding" if fc == 3 else "input", address, count)
                return bytes([fc, 2 * count]) + struct.pack(f">{count}H", *regs)
            if fc == 6:
                address, value = struct.unpack(">HH", pdu[1:5])
                self.set_registers("holding", address, [value])
                return pdu[:5]
            if fc == 16:
                address, count, nbytes = struct.unpack(">HHB", pdu[1:6])
                if not 1 <= count <= 123 or nbytes != 2 * count or len(pdu) != 6 + nbytes:
                    return bytes([fc | 0x80, ILLEGAL_DATA_VALUE])
                if address + count > 65536:
                    return bytes([fc | 0x80, ILLEGAL_DATA_ADDRESS])
                self.set_registers("holding", address, list(struct.unpack(f">{count}H", pdu[6:])))
                return pdu[:5]
        except struct.error:
            return bytes([fc | 0x80, ILLEGAL_DATA_VALUE])
        return bytes([fc | 0x80, ILLEGAL_FUNCTION])
