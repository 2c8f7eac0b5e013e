"""Shared helpers for the driver tests: an event loop runner, a free port, a fake clock."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from pyModbusTCP.server import DataBank, ModbusServer


def run(coro: Coroutine[Any, Any, None]) -> None:
    """Run one test's coroutine; a hang fails the test after 10 s instead of blocking CI."""

    async def guarded() -> None:
        await asyncio.wait_for(coro, 10.0)

    asyncio.run(guarded())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class FakeClock:
    """Injectable monotonic clock (seconds) that moves only when told to."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


@contextmanager
def pymodbustcp_server(bank: DataBank | None = None) -> Iterator[ModbusServer]:
    """An independent pyModbusTCP server on a free loopback port, stopped (thread joined) on exit."""
    server: ModbusServer | None = None
    for _ in range(5):  # another process may take the free port between probe and bind
        candidate = ModbusServer(host="127.0.0.1", port=free_port(), no_block=True, data_bank=bank)
        try:
            candidate.start()
        except ModbusServer.NetworkError:
            continue
        server = candidate
        break
    assert server is not None, "could not start pyModbusTCP server"
    try:
        yield server
    finally:
        server.stop()
        thread = server._serve_th
        if thread is not None:
            thread.join(timeout=5.0)
            assert not thread.is_alive()
