"""EV sessions forecast from session history: deterministic, one explainable rule.

Trained on the sessions that arrived and departed in the `weeks` weeks of whole local days
before the origin:

- site-wide, per local weekday: expected sessions per day n_w = round(mean daily count);
- per charger and weekday: probability p = share of those days with a session there, the
  medians of the (first) session's local arrival time and dwell, and its mean energy (a mean,
  so that the forecast energy per day is not biased low by the skewed energy distribution);
- a forecast day with weekday w gets one session on each of the n_w chargers with the highest
  p (ties by name), at that charger's median arrival, with its median dwell and energy. Where a
  charger saw fewer than `min_sessions` such sessions, the site-wide medians of that weekday
  are used instead (thin data).

Sessions on one charger never overlap: a departure is cut at the charger's next arrival.
Energy is kWh, times are UTC (arrival/departure of `EvSessionEvent`), days are site-local.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from ems.inputs.site_inputs import EvSessionEvent


@dataclass(frozen=True)
class SessionStats:
    """Typical session of one charger (or the site) on one weekday: median arrival and dwell,
    mean energy (kWh)."""

    probability: float
    arrival_minute: float
    """Local minutes after midnight."""
    dwell_minutes: float
    energy_kwh: float
    sessions: int


@dataclass(frozen=True)
class EvModel:
    """Fitted EV forecast; `per_day[w]` sessions expected on local weekday w (Monday = 0)."""

    timezone: str
    per_day: tuple[int, ...]
    mean_per_day: tuple[float, ...]
    chargers: dict[int, list[tuple[str, SessionStats]]]
    """Per weekday: chargers ordered by probability (highest first) with their stats."""

    def sessions(self, start_utc: datetime, end_utc: datetime, min_dwell_minutes: float = 15.0
                 ) -> list[EvSessionEvent]:
        """Forecast sessions arriving in [start_utc, end_utc), sorted by arrival."""
        start, end = pd.Timestamp(start_utc), pd.Timestamp(end_utc)
        first = start.tz_convert(self.timezone).date() - timedelta(days=1)
        last = end.tz_convert(self.timezone).date()
        out: list[EvSessionEvent] = []
        day = first
        while day <= last:
            out += self.day_sessions(day)
            day += timedelta(days=1)
        out = no_overlap(out, min_dwell_minutes)
        return [s for s in out if start <= pd.Timestamp(s.arrival_utc) < end]

    def day_sessions(self, day: date) -> list[EvSessionEvent]:
        """The sessions forecast to arrive on local `day` (before the no-overlap cut)."""
        w = day.weekday()
        out = []
        for charger, st in self.chargers.get(w, [])[: self.per_day[w]]:
            arrive = _local_utc(day, st.arrival_minute, self.timezone)
            depart = arrive + pd.Timedelta(minutes=round(st.dwell_minutes))
            sid = f"fc:{charger}@{arrive.tz_convert(self.timezone):%Y-%m-%dT%H:%M}"
            out.append(EvSessionEvent(sid, charger, arrive.to_pydatetime(), depart.to_pydatetime(),
                                      st.energy_kwh))
        return out


def _local_utc(day: date, minute: float, tz: str) -> pd.Timestamp:
    local = pd.Timestamp(day.isoformat()) + pd.Timedelta(minutes=round(minute))
    # DST: a time skipped by the clock moves forward; a repeated time takes the first instance
    return local.tz_localize(tz, ambiguous=True, nonexistent="shift_forward").tz_convert("UTC")


def no_overlap(sessions: list[EvSessionEvent], min_dwell_minutes: float = 15.0) -> list[EvSessionEvent]:
    """Sessions with each departure cut at the next arrival on its charger; shorter than
    `min_dwell_minutes` after the cut: dropped."""
    by_charger: dict[str, list[EvSessionEvent]] = defaultdict(list)
    for s in sorted(sessions, key=lambda s: s.arrival_utc):
        by_charger[s.charger].append(s)
    out = []
    for items in by_charger.values():
        for i, s in enumerate(items):
            dep = s.departure_utc
            if i + 1 < len(items) and items[i + 1].arrival_utc < dep:
                dep = items[i + 1].arrival_utc
            if (dep - s.arrival_utc).total_seconds() >= min_dwell_minutes * 60:
                out.append(EvSessionEvent(s.session_id, s.charger, s.arrival_utc, dep, s.energy_kwh))
    return sorted(out, key=lambda s: (s.arrival_utc, s.charger))


GAP_DAYS = 7
"""A day with no session within +-GAP_DAYS/2 days (a gap in the records of at least GAP_DAYS
days) is missing data, not a day without sessions, and is left out of training."""


def training_days(origin_utc: datetime, timezone: str, weeks: int) -> list[date]:
    """The 7 * `weeks` whole local days before the origin's local day."""
    today = pd.Timestamp(origin_utc).tz_convert(timezone).date()
    return [today - timedelta(days=k) for k in range(7 * weeks, 0, -1)]


def fit_ev_model(history: list[EvSessionEvent], timezone: str, origin_utc: datetime, weeks: int = 8,
                 min_sessions: int = 3) -> EvModel:
    """Fit on the sessions of `history` that arrived on one of `training_days` and departed
    before the origin. A day without sessions counts as a zero-session day unless it lies in a
    gap of the records (see GAP_DAYS)."""
    origin = pd.Timestamp(origin_utc)
    arrivals = [pd.Timestamp(s.arrival_utc).tz_convert(timezone) for s in history]
    half = GAP_DAYS // 2
    covered = {t.date() + timedelta(days=k) for t in arrivals for k in range(-half, half + 1)}
    days = [d for d in training_days(origin_utc, timezone, weeks) if d in covered]
    wanted = set(days)
    per_date: dict[date, list[tuple[pd.Timestamp, EvSessionEvent]]] = defaultdict(list)
    for local, s in zip(arrivals, history, strict=True):
        if local.date() in wanted and pd.Timestamp(s.departure_utc) <= origin:
            per_date[local.date()].append((local, s))
    n_days = [sum(1 for d in days if d.weekday() == w) for w in range(7)]
    mean_per_day = []
    for w in range(7):
        count = sum(len(v) for d, v in per_date.items() if d.weekday() == w)
        mean_per_day.append(count / n_days[w] if n_days[w] else 0.0)
    chargers: dict[int, list[tuple[str, SessionStats]]] = {}
    for w in range(7):
        firsts: dict[str, list[tuple[pd.Timestamp, EvSessionEvent]]] = defaultdict(list)
        everyone: list[tuple[pd.Timestamp, EvSessionEvent]] = []
        for d, items in per_date.items():
            if d.weekday() != w:
                continue
            seen: set[str] = set()
            for local, s in sorted(items, key=lambda x: x[0]):
                everyone.append((local, s))
                if s.charger not in seen:
                    seen.add(s.charger)
                    firsts[s.charger].append((local, s))
        site = _stats(everyone, n_days[w]) if everyone else None
        ranked = []
        for charger, items in firsts.items():
            st = _stats(items, n_days[w])
            if len(items) < min_sessions and site is not None:
                st = SessionStats(st.probability, site.arrival_minute, site.dwell_minutes,
                                  site.energy_kwh, st.sessions)
            ranked.append((charger, st))
        ranked.sort(key=lambda x: (-x[1].probability, x[0]))
        chargers[w] = ranked
    per_day = tuple(min(int(np.floor(m + 0.5)), len(chargers.get(w, [])))
                    for w, m in enumerate(mean_per_day))
    return EvModel(timezone, per_day, tuple(mean_per_day), chargers)


def _stats(items: list[tuple[pd.Timestamp, EvSessionEvent]], n_days: int) -> SessionStats:
    arrival = [t.hour * 60 + t.minute + t.second / 60 for t, _ in items]
    dwell = [(s.departure_utc - s.arrival_utc).total_seconds() / 60 for _, s in items]
    energy = [s.energy_kwh for _, s in items]
    days = len({t.date() for t, _ in items})
    return SessionStats(probability=days / n_days if n_days else 0.0,
                        arrival_minute=float(np.median(arrival)), dwell_minutes=float(np.median(dwell)),
                        energy_kwh=float(np.mean(energy)), sessions=len(items))
