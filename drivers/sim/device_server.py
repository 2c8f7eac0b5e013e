"""A register server that remembers when a client last wrote each holding register.

Device watchdogs need to know when a setpoint was last written, even when the value did not
change (a keep-alive). Writes from the network go through :meth:`RegisterServer.set_registers`;
the simulator publishes its own values inside :meth:`WatchedServer.local`, which are not counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from drivers.modbus.profile import Profile, Table
from drivers.sim.register_server import RegisterServer


class WatchedServer(RegisterServer):
    """:class:`RegisterServer` with ``written_at``: holding address -> clock time (s) of the last
    client write."""

    def __init__(
        self,
        profile: Profile,
        host: str = "127.0.0.1",
        port: int = 0,
        unit_id: int = 1,
        clock: Callable[[], float] = lambda: 0.0,
    ) -> None:
        super().__init__(profile, host, port, unit_id)
        self.clock = clock
        self.written_at: dict[int, float] = {}
        self._local_depth = 0

    @contextmanager
    def local(self) -> Iterator[None]:
        """Register changes made inside are the device's own, not client writes."""
        self._local_depth += 1
        try:
            yield
        finally:
            self._local_depth -= 1

    def set_point(self, name: str, value: float | str) -> None:
        with self.local():
            super().set_point(name, value)

    def set_registers(self, table: Table, address: int, values: list[int]) -> None:
        super().set_registers(table, address, values)
        if self._local_depth == 0 and table == "holding":
            now = self.clock()
            for i in range(len(values)):
                self.written_at[address + i] = now

    def last_write(self, address: int, count: int) -> float | None:
        """Clock time of the last client write touching ``count`` registers from ``address``."""
        times = [self.written_at[a] for a in range(address, address + count) if a in self.written_at]
        return max(times) if times else None
