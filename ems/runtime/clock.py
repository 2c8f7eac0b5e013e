"""The service's one clock: UTC now, as seconds of site time since ``start_utc``.

- :class:`SiteClock` (``ems run``): site time runs ``speed`` times real time. Without a simulated
  site it is real time (speed 1, start = now).
- :class:`SteppedClock` (stepped runs of a simulated site, the service tests): site time moves
  only when told, by the stepped scheduler (:mod:`ems.runtime.scheduling`), once the service has
  nothing left to do at the present instant. ``speed`` is then nominal: the compression whose
  job timetable the stepped run reproduces (see :func:`SiteClock.wall_seconds`).

Plan slots, timestamps and records use the clock; device watchdogs and simulators count its
``sim_seconds``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What the service reads of its clock."""

    speed: float
    """Site seconds per wall second (nominal for a stepped clock)."""
    start_utc: datetime

    def sim_seconds(self) -> float:
        """Site seconds since ``start_utc``."""
        ...

    def now(self) -> datetime:
        """Site time, UTC."""
        ...

    def wall_seconds(self, sim_seconds: float) -> float:
        """Wall seconds that ``sim_seconds`` of site time take (at ``speed``)."""
        ...


def _check_speed(speed: float) -> float:
    if not speed > 0:
        raise ValueError(f"speed must be > 0, got {speed!r}")
    return speed


class SiteClock:
    """Site time running ``speed`` times the wall clock ``monotonic`` (seconds)."""

    def __init__(self, start_utc: datetime | None = None, speed: float = 1.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.speed = _check_speed(speed)
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


class SteppedClock:
    """Site time that stands still until :meth:`advance_to` moves it (never backwards).

    ``speed`` (site seconds per wall second) is nominal: :meth:`wall_seconds` converts with it, so
    that the service's wall-time floors (shortest job periods, device budgets) come out as in a
    :class:`SiteClock` run at that speed; no wall time passes on this clock.
    """

    def __init__(self, start_utc: datetime | None = None, speed: float = 1.0) -> None:
        self.speed = _check_speed(speed)
        self.start_utc = (start_utc or datetime.now(UTC)).astimezone(UTC)
        self._t = 0.0

    def sim_seconds(self) -> float:
        """Site seconds since the start, as last moved."""
        return self._t

    def now(self) -> datetime:
        return self.start_utc + timedelta(seconds=self._t)

    def wall_seconds(self, sim_seconds: float) -> float:
        """Wall seconds ``sim_seconds`` of site time would take at the nominal ``speed``."""
        return sim_seconds / self.speed

    def advance_to(self, sim_seconds: float) -> None:
        """Move site time to ``sim_seconds`` since the start (>= the present)."""
        if sim_seconds < self._t:
            raise ValueError(f"time cannot go back: at {self._t:g} s, asked for {sim_seconds:g} s")
        self._t = sim_seconds

    def advance(self, seconds: float) -> None:
        """Move site time on by ``seconds`` (>= 0)."""
        self.advance_to(self._t + seconds)
