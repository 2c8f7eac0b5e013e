"""A device read through its profile: every planned block is one request; failures never raise."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from drivers.modbus.profile import Profile, ReadBlock, Reading, decode_reads, plan_reads
from drivers.modbus.transport import ModbusTransport, TransportError


def utc_now() -> datetime:
    return datetime.now(UTC)


class PollResult(dict[str, Reading]):
    """Readings by point name, plus the UTC time the poll completed."""

    def __init__(self, readings: dict[str, Reading], timestamp: datetime) -> None:
        super().__init__(readings)
        self.timestamp = timestamp


class ProfileDevice:
    def __init__(
        self,
        profile: Profile,
        transport: ModbusTransport,
        unit_id: int | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.profile = profile
        self.transport = transport
        self.unit_id = profile.unit_id if unit_id is None else unit_id
        self.clock = clock
        self.blocks = plan_reads(profile)

    async def poll(self) -> PollResult:
        good: list[tuple[ReadBlock, Sequence[int]]] = []
        failed: dict[str, Reading] = {}
        for block in self.blocks:
            try:
                registers = await self.transport.read(block.table, block.start, block.count, self.unit_id)
            except TransportError as exc:
                for name in block.points:
                    unit = self.profile.points[name].unit
                    failed[name] = Reading(None, unit, f"error: {exc.reason}")
                continue
            good.append((block, registers))
        try:
            readings = decode_reads(self.profile, good)
        except ValueError as exc:
            readings = {
                name: Reading(None, self.profile.points[name].unit, f"error: decode: {exc}")
                for block, _ in good
                for name in block.points
            }
        readings.update(failed)
        ordered = {name: readings[name] for block in self.blocks for name in block.points}
        return PollResult(ordered, self.clock())
