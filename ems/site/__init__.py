"""The site the controller runs: its devices read and commanded, over Modbus (:mod:`.modbus`,
the service) or in-process on the simulators' plant (:mod:`.plant`, the what-if).

Both give the controller the same thing, capability readings by device name (:class:`Site`),
and take the same site setpoints (kW) turned into typed device setpoints by
:func:`ems.site.commands.setpoint_for`. The Modbus site writes them asynchronously, bounded so
that a silent device holds no cycle; the plant site applies them at once.
"""

from __future__ import annotations

from typing import Protocol

from drivers.capabilities import CapabilityReading


class Site(Protocol):
    def readings(self) -> dict[str, CapabilityReading | None]:
        """Every device's latest capability reading (None: no reading)."""
        ...
