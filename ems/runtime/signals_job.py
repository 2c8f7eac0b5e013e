"""Live tariff and carbon sources fetched at run time into the signal cache (HTTP in a worker
thread). A source that fails keeps its last good data and raises ``signal_stale``; values that
change within the plan horizon ask for a re-plan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ems.config.loader import LoadedSite
from ems.planning.problem_builder import floor_to_step, horizon_steps
from ems.runtime.alarms import Alarms
from ems.signals.fetch import Get
from ems.signals.site_signals import fetch_all, live_signals, signal_cache

log = logging.getLogger("ems.service")


class LiveSignals:
    def __init__(self, site: LoadedSite, http: Get, now: Callable[[], datetime], alarms: Alarms,
                 request_plan: Callable[[str], None]) -> None:
        self.site = site
        self.http = http
        self.now = now
        self.alarms = alarms
        self.request_plan = request_plan
        self.names = [s.name for s in live_signals(site)]
        self.fetched = 0
        """Fetch rounds done (each asks every live source once)."""

    async def fetch(self, replan: bool = True) -> None:
        """Fetch every live signal into the cache; re-plan when values in the horizon changed."""
        cfg = self.site.config
        now = self.now()
        step = cfg.planning.step_minutes
        slot = floor_to_step(now, step)
        end = slot + timedelta(minutes=step * horizon_steps(cfg))
        cache = signal_cache(self.site, clock=self.now)
        before = {name: _window(cache.load(name), slot, end) for name in self.names}
        try:
            outcomes = await asyncio.to_thread(fetch_all, self.site, now, self.http, cache)
        except Exception as exc:  # e.g. the cache directory is not writable: keep running
            self.alarms.raise_("signals", "signal_fetch_failed", "warning", f"fetching signals failed: {exc}")
            return
        self.fetched += 1
        changed = []
        for o in outcomes:
            name, where = o.signal.name, f"{o.signal.config_field} ({o.signal.provider})"
            if o.result is None or o.result.stale:
                why = o.error or (o.result.message if o.result is not None else None) or "no data"
                self.alarms.raise_(f"signal:{name}", "signal_stale", "warning",
                                   f"{where}: {why}; planning goes on with the last good data")
                continue
            self.alarms.clear(f"signal:{name}", "signal_stale")
            if _window(o.result, slot, end) != before.get(name):
                changed.append(name)
        if changed:
            log.info("new signal data: %s", ", ".join(changed),
                     extra={"event": "signals", "changed": changed})
            if replan:
                self.request_plan(f"new {', '.join(changed)} data")


def _window(signal: Any, start: datetime, end: datetime) -> tuple[tuple[str, float], ...] | None:
    """A signal's values in [start, end) as comparable pairs (None when there is no signal)."""
    if signal is None:
        return None
    values = signal.values
    part = values[(values.index >= start) & (values.index < end)]
    return tuple((t.isoformat(), round(float(v), 9)) for t, v in part.items())
