"""`ems sim SITE`: serve every device of a site over Modbus TCP from one simulated plant.

The plant steps on a clock running ``--speed`` times real time; PV and load follow the site's
series at the simulated time, EV sessions the site's schedule. Devices whose profile cannot be
served here (SunSpec profiles while ``drivers.sunspec`` is missing) are listed and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from ems.cli.common import fail, input_errors, load
from ems.config.site_devices import SiteDevice, site_devices

if TYPE_CHECKING:
    import pandas as pd

    from drivers.sim.site_sim import SiteSimulator
    from ems.config.loader import LoadedSite
    from ems.config.models import SiteConfig


def find_device(cfg: SiteConfig, name: str) -> SiteDevice:
    devices = site_devices(cfg)
    for d in devices:
        if d.name == name:
            return d
    known = ", ".join(d.name for d in devices) or "none"
    fail(f"device {name!r}: no asset of that name has a device table (devices: {known})")


class SeriesWindow:
    """PV available, load and hydrogen offtake of a site at any UTC time, from its series
    (step values, a window of days built at a time). Past the site's data the year before is used."""

    def __init__(self, site: LoadedSite, days: int = 2) -> None:
        from ems.inputs.site_inputs import data_limit_utc, data_start_utc

        self.site = site
        self.days = days
        self.first = data_start_utc(site)
        self.limit = data_limit_utc(site)
        self.step_h = site.config.planning.step_minutes / 60.0
        self._frame: pd.DataFrame | None = None

    def _inside(self, at: datetime) -> datetime:
        while self.limit is not None and at >= self.limit - timedelta(days=self.days):
            at -= timedelta(days=364)
        while self.first is not None and at < self.first:
            at += timedelta(days=364)
        return at

    def _row(self, at: datetime) -> pd.Series[float]:
        import pandas as pd

        from ems.inputs.site_inputs import build_inputs

        at = self._inside(at)
        ts = pd.Timestamp(at)
        frame = self._frame
        if frame is None or not frame.index[0] <= ts < frame.index[-1]:
            day = ts.floor("D").to_pydatetime()
            frame = self._frame = build_inputs(self.site, day, day + timedelta(days=self.days),
                                               signals=False).frame
        position = int(frame.index.searchsorted(ts, side="right")) - 1
        row: pd.Series[float] = frame.iloc[max(0, position)]
        return row

    def _columns(self, at: datetime, prefix: str, suffix: str, scale: float = 1.0) -> dict[str, float]:
        row = self._row(at)
        return {str(c)[len(prefix):-len(suffix)]: float(row[c]) * scale
                for c in row.index if str(c).startswith(prefix)}

    def pv_available_kw(self, at: datetime) -> dict[str, float]:
        return self._columns(at, "pv:", "_kw")

    def load_kw(self, at: datetime) -> dict[str, float]:
        return self._columns(at, "load:", "_kw")

    def offtake_kg_per_h(self, at: datetime) -> dict[str, float]:
        return self._columns(at, "h2:", "_kg", 1.0 / self.step_h)


SIMULATION_MARGIN = timedelta(days=10)
"""Data a simulated run needs after its start: the simulator's week of vehicle sessions and the
plans' horizon (48 h), with a day to spare."""


SIMULATION_LEAD = timedelta(days=1)
"""Data a simulated run needs before its start (a vehicle plugged in since the day before)."""


def default_start(site: LoadedSite, now: datetime | None = None) -> datetime:
    """Now (or ``now``), moved into the site's data period (same day of year) when it lies
    outside it, then back by whole weeks (same weekday and time of day) while the data after it
    would not last :data:`SIMULATION_MARGIN` (forward while :data:`SIMULATION_LEAD` is not
    there before it): a simulated run can start on any calendar day."""
    from ems.inputs.site_inputs import data_limit_utc, data_start_utc

    now = (now or datetime.now(UTC)).replace(microsecond=0)
    first, limit = data_start_utc(site), data_limit_utc(site)
    data_start = site.config.site.data_start
    if first is not None and limit is not None and data_start and not first <= now < limit:
        years = now.year - int(data_start[:4])
        try:
            now = now.replace(year=now.year - years)
        except ValueError:  # 29 February
            now = now.replace(year=now.year - years, day=28)
    if first is not None and limit is not None:
        while now + SIMULATION_MARGIN > limit and now - timedelta(days=7) - SIMULATION_LEAD >= first:
            now -= timedelta(days=7)
        while now - SIMULATION_LEAD < first and now + timedelta(days=7) + SIMULATION_MARGIN <= limit:
            now += timedelta(days=7)
    return now


def simulator_for_site(site: LoadedSite, clock: Callable[[], float], start_utc: datetime,
                       session_days: float = 7.0) -> SiteSimulator:
    """One plant (the what-if plant model) and one server per configured device."""
    from drivers.sim.site_sim import SiteSimulator, VehicleSession
    from ems.inputs.site_inputs import build_inputs
    from ems.site.plant import plant_from_config, sim_devices

    cfg = site.config
    devices = sim_devices(cfg)
    sessions: list[VehicleSession] = []
    if cfg.ev_sessions is not None:
        window = SeriesWindow(site)._inside(start_utc)
        shift = start_utc - window
        found = build_inputs(site, window - timedelta(days=1), window + timedelta(days=session_days),
                             signals=False).sessions
        sessions = [VehicleSession(s.charger, s.session_id, s.arrival_utc + shift, s.departure_utc + shift,
                                   s.energy_kwh) for s in found]
    return SiteSimulator(plant_from_config(cfg), devices, SeriesWindow(site), start_utc=start_utc,
                         clock=clock, sessions=sessions)


def device_table(sim: SiteSimulator) -> list[str]:
    """Lines of the table of served devices, then one line per skipped device."""
    rows = [(name, d.profile.name, f"{d.server.host}:{d.server.port}", str(d.server.unit_id))
            for name, d in sim.devices.items()]
    header = ("device", "profile", "address", "unit")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    lines += [f"skipped {name}: {reason}" for name, reason in sim.skipped.items()]
    return lines


def parse_start(text: str | None, site: LoadedSite) -> datetime:
    if text is None:
        return default_start(site)
    from zoneinfo import ZoneInfo

    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--start {text!r}: not an ISO date-time (e.g. 2025-06-02T08:00)")
    if at.tzinfo is None:
        at = at.replace(tzinfo=ZoneInfo(site.config.site.timezone))
    return at.astimezone(UTC)


async def serve(site: LoadedSite, speed: float, duration_s: float | None, start_utc: datetime,
                period_s: float) -> float:
    """Serve until Ctrl-C or ``duration_s`` wall seconds; returns simulated seconds run."""
    t0 = time.monotonic()

    def clock() -> float:
        return (time.monotonic() - t0) * speed

    sim = simulator_for_site(site, clock, start_utc)
    await sim.start()
    try:
        sys.stdout.write("\n".join(device_table(sim)) + "\n")
        sys.stdout.write(f"simulating from {start_utc.isoformat()} at {speed:g}x; Ctrl-C stops\n")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        if duration_s is not None:
            loop.call_later(duration_s, stop.set)
        await sim.run(period_s, stop, sleep=lambda s: _sleep_or_stop(s, stop))
    finally:
        await sim.stop()
    return clock()


async def _sleep_or_stop(seconds: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def sim(
    site: Annotated[str, typer.Argument(help="Site name (site_configs/NAME.toml) or path to a TOML file.")],
    speed: Annotated[float, typer.Option(min=0.0, help="Simulated seconds per wall second.")] = 1.0,
    duration: Annotated[float | None, typer.Option(
        min=0.0, help="Stop after this many wall seconds (default: run until Ctrl-C).")] = None,
    start: Annotated[str | None, typer.Option(
        help="Simulated start, ISO date-time (site local time unless it has an offset); "
             "default: now, moved into the site's data year.")] = None,
    period: Annotated[float, typer.Option(min=0.01, help="Wall seconds between plant steps.")] = 1.0,
    sets: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a config value, e.g. battery.bess.capacity_kwh=4000.")] = None,
) -> None:
    """Serve every device of SITE over Modbus TCP on the ports in its config."""
    with input_errors():
        loaded = load(site, sets)
        start_utc = parse_start(start, loaded)
        if speed <= 0:
            fail(f"--speed must be > 0, got {speed:g}")
        try:
            simulated = asyncio.run(serve(loaded, speed, duration, start_utc, period))
        except KeyboardInterrupt:
            return
        sys.stdout.write(f"stopped after {simulated:.0f} simulated seconds\n")


if __name__ == "__main__":
    typer.run(sim)
