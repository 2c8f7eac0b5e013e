"""The service's one clock: UTC now, running ``speed`` times real time from ``start_utc``.

Without a simulated site the clock is real time (speed 1, start = now). Polling and job
intervals stay in wall seconds; plan slots, timestamps and records use this clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class SiteClock:
    def __init__(self, start_utc: datetime | None = None, speed: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        self.speed = speed
        self.monotonic = monotonic
        self._t0 = monotonic()
        self.start_utc = (start_utc or datetime.now(UTC)).astimezone(UTC)

    def sim_seconds(self) -> float:
        """Simulated seconds since the start (the simulators' clock)."""
        return (self.monotonic() - self._t0) * self.speed

    def now(self) -> datetime:
        return self.start_utc + timedelta(seconds=self.sim_seconds())

    def wall_seconds(self, sim_seconds: float) -> float:
        """Wall seconds that ``sim_seconds`` of site time take."""
        return sim_seconds / self.speed
