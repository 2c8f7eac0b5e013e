"""EV sessions as the service sees them: a vehicle plugs in (charger reading ``plugged``), its
energy need and departure come from the API or the config's defaults, and it ends at unplug.

Sessions in progress are kept in the store's runtime state, so a restart resumes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from ems.config.models import DailySessions, SiteConfig
from ems.inputs.site_inputs import EvSessionEvent, daily_sessions

Expected = Callable[[str, datetime], tuple[datetime, float] | None]
"""(charger, plug-in time UTC) -> the departure (UTC) and energy (kWh) the config expects for
that vehicle, or None when the config has no session for it."""

EARLY_ARRIVAL = timedelta(hours=3)
"""A vehicle plugged in this long before its scheduled arrival is taken as that session."""


def expected_from_config(cfg: SiteConfig) -> Expected | None:
    """The config's daily sessions as what a plugged-in vehicle is expected to need (None when
    the config has no daily sessions: recorded sessions say nothing about tomorrow's)."""
    sessions = cfg.ev_sessions
    if not isinstance(sessions, DailySessions):
        return None
    tz = cfg.site.timezone

    def expected(charger: str, now: datetime) -> tuple[datetime, float] | None:
        found = [s for s in daily_sessions(sessions, tz, now - timedelta(days=1), now + timedelta(days=1))
                 if s.charger == charger and s.arrival_utc - EARLY_ARRIVAL <= now < s.departure_utc]
        if not found:
            return None
        s = min(found, key=lambda s: abs((s.arrival_utc - now).total_seconds()))
        return s.departure_utc, s.energy_kwh
    return expected


@dataclass
class ActiveSession:
    session_id: str
    charger: str
    arrival_utc: datetime
    departure_utc: datetime
    energy_kwh: float
    """Energy the vehicle wants in this session (kWh)."""
    delivered_kwh: float = 0.0
    source: str = "default"
    """Where departure and energy came from: "config" (the config's sessions), "default"
    (``service.ev_default_*``) or "api"."""

    def as_event(self) -> EvSessionEvent:
        return EvSessionEvent(self.session_id, self.charger, self.arrival_utc, self.departure_utc,
                              self.energy_kwh)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["arrival_utc"] = self.arrival_utc.isoformat()
        d["departure_utc"] = self.departure_utc.isoformat()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ActiveSession:
        return cls(d["session_id"], d["charger"], datetime.fromisoformat(d["arrival_utc"]),
                   datetime.fromisoformat(d["departure_utc"]), float(d["energy_kwh"]),
                   float(d.get("delivered_kwh", 0.0)), d.get("source", "default"))


class SessionTracker:
    """Sessions per charger, opened at plug-in and closed at unplug (or at departure + grace)."""

    def __init__(self, default_energy_kwh: float, default_dwell_h: float,
                 expected: Expected | None = None) -> None:
        """A vehicle's departure and need come from ``expected`` (the config's sessions) when it
        knows the vehicle, else from the defaults (kWh, hours after plug-in)."""
        self.default_energy_kwh = default_energy_kwh
        self.default_dwell_h = default_dwell_h
        self.expected = expected
        self.active: dict[str, ActiveSession] = {}
        self.finished: list[ActiveSession] = []

    def observe(self, charger: str, plugged: bool | None, session_energy_kwh: float | None,
                now: datetime) -> str | None:
        """Update from one charger reading; returns "plugged" or "unplugged" on a change, else None.
        ``plugged`` None (missing reading) changes nothing."""
        if plugged is None:
            return None
        current = self.active.get(charger)
        if plugged and current is None:
            known = self.expected(charger, now) if self.expected is not None else None
            departure, energy_kwh, source = (
                (*known, "config") if known is not None
                else (now + timedelta(hours=self.default_dwell_h), self.default_energy_kwh, "default"))
            self.active[charger] = ActiveSession(
                f"{charger}@{now:%Y-%m-%dT%H:%M:%SZ}", charger, now, departure, energy_kwh, source=source)
            return "plugged"
        if not plugged and current is not None:
            self.finished.append(self.active.pop(charger))
            return "unplugged"
        if current is not None and session_energy_kwh is not None:
            current.delivered_kwh = max(current.delivered_kwh, session_energy_kwh)
        return None

    def set_need(self, charger: str, departure_utc: datetime | None,
                 energy_kwh: float | None) -> ActiveSession:
        """A driver's (or operator's) departure time and energy for the vehicle on ``charger``."""
        s = self.active.get(charger)
        if s is None:
            raise KeyError(charger)
        if departure_utc is not None:
            s.departure_utc = departure_utc
        if energy_kwh is not None:
            s.energy_kwh = energy_kwh
        s.source = "api"
        return s

    def events(self, now: datetime, step_minutes: int) -> list[EvSessionEvent]:
        """Sessions for planning: remaining need from ``now``; a departure already passed is
        moved one step ahead (the vehicle is still there)."""
        out = []
        for s in self.active.values():
            departure = max(s.departure_utc, now + timedelta(minutes=step_minutes))
            out.append(EvSessionEvent(s.session_id, s.charger, s.arrival_utc, departure, s.energy_kwh))
        return out

    def to_json(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.active.values()]

    def restore(self, rows: list[dict[str, Any]]) -> None:
        self.active = {r["charger"]: ActiveSession.from_json(r) for r in rows}
