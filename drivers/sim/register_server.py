"""A Modbus TCP server that serves a profile's register map, with fault injection.

It speaks FC3 (read holding), FC4 (read input), FC6 (write single) and FC16 (write multiple);
unused registers read 0. Faults (``server.faults``): ``no_answer`` swallows requests, ``delay_s``
delays every answer, ``exception_code`` answers every request with that Modbus exception.
"""

from __future__ import annotations

import asyncio
import struct
from collections import Counter
from dataclasses import dataclass
from types import TracebackType

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

    def clear(self) -> None:
        self.no_answer = False
        self.delay_s = 0.0
        self.exception_code = None


class RegisterServer:
    def __init__(self, profile: Profile, host: str = "127.0.0.1", port: int = 0, unit_id: int = 1) -> None:
        self.profile = profile
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
        point = self.profile.points[name]
        self.set_registers(point.table, point.address, encode(value, self.profile.point_spec(name)))

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
