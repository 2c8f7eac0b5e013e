"""Independent Modbus peers written for the tests on raw asyncio sockets (not our simulator).

Each answers FC3/FC4 reads with register ``address + i`` holding ``value(unit, address + i)``
(by default ``unit * 1000 + address + i``), built with ``struct`` from the Modbus specification.
"""

from __future__ import annotations

import asyncio
import struct
from collections import Counter
from collections.abc import Callable
from types import TracebackType


def crc16(frame: bytes) -> int:
    """CRC-16/Modbus (reflected polynomial 0xA001, initial 0xFFFF)."""
    crc = 0xFFFF
    for byte in frame:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def default_value(unit: int, address: int) -> int:
    return (unit * 1000 + address) & 0xFFFF


class _Peer:
    def __init__(self) -> None:
        self.port = 0
        self.requests: Counter[int] = Counter()
        """Read requests received, by unit id."""
        self.value: Callable[[int, int], int] = default_value
        self.registers: dict[tuple[int, int], list[int]] = {}
        """Raw register images by (unit, address): a read at that address gets these words,
        whatever count it asked for."""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def words(self, unit: int, address: int, count: int) -> list[int]:
        if (unit, address) in self.registers:
            return self.registers[(unit, address)]
        return [self.value(unit, address + i) for i in range(count)]

    async def __aenter__(self) -> _Peer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._converse(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class GatewayPeer(_Peer):
    """A Modbus TCP gateway: answers reads for the unit ids in ``answering``, stays silent for
    the others (a dead unit on its serial side) and for all of them while ``silent`` is set
    (the whole bus down). ``close_on_request`` closes the connection when a request arrives;
    ``exception_at`` maps (unit, address, count) to an exception code to answer with."""

    def __init__(self, answering: set[int]) -> None:
        super().__init__()
        self.answering = answering
        self.silent = False
        self.close_on_request = False
        self.exception_at: dict[tuple[int, int, int], int] = {}

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            tid, _proto, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
            pdu = await reader.readexactly(length - 1)
            self.requests[unit] += 1
            if self.close_on_request:
                writer.close()
                return
            if self.silent or unit not in self.answering:
                continue
            fc = pdu[0]
            address, count = struct.unpack(">HH", pdu[1:5])
            code = self.exception_at.get((unit, address, count))
            if code is not None:
                answer = bytes([fc | 0x80, code])
            else:
                regs = self.words(unit, address, count)
                answer = bytes([fc, 2 * len(regs)]) + struct.pack(f">{len(regs)}H", *regs)
            writer.write(struct.pack(">HHHB", tid, 0, len(answer) + 1, unit) + answer)
            await writer.drain()


class RtuStreamPeer(_Peer):
    """One RTU slave on a byte stream (RTU frames with CRC over TCP, as a serial line or an
    RTU-over-TCP gateway carries them). It answers requests one at a time, in order; the reply to
    a read at an address in ``delay_s`` is sent that many seconds late, and one at an address in
    ``held`` only once that event is set (a reply as late as the test wants)."""

    def __init__(self, unit: int = 1) -> None:
        super().__init__()
        self.unit = unit
        self.delay_s: dict[int, float] = {}
        self.held: dict[int, asyncio.Event] = {}

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            frame = await reader.readexactly(8)  # FC3/FC4 requests: unit, fc, address, count, crc
            unit, fc, address, count = struct.unpack(">BBHH", frame[:6])
            self.requests[unit] += 1
            if unit != self.unit:
                continue
            delay = self.delay_s.get(address, 0.0)
            if delay:
                await asyncio.sleep(delay)
            held = self.held.get(address)
            if held is not None:
                await held.wait()
            regs = self.words(unit, address, count)
            body = bytes([unit, fc, 2 * len(regs)]) + struct.pack(f">{len(regs)}H", *regs)
            writer.write(body + crc16(body).to_bytes(2, "little"))
            await writer.drain()
