"""The site service: APScheduler (3.x, asyncio) runs the jobs on one event loop.

- plan: every plan step, aligned to the step start (site clock), and on events (EV plugged in or
  out, device lost or back). The solve runs in a worker thread, so polling and dispatch go on.
  A plan asked for while one is being solved is skipped, not queued (``plans_skipped``);
  the job has ``max_instances=1`` and ``coalesce=True``, and a run that misses its time by more
  than ``misfire_grace_time`` is dropped: the next slot plans with fresh data anyway.
- dispatch: every ``dispatch_s`` of site time (at least every ``min_wall_period_s`` wall
  seconds): plan slot targets (or rules), grid limits from the meter, the safety guard, writes.
- telemetry: every ``telemetry_s`` of site time, every device field to the store.
- signals: every ``service.signals_every_s`` of site time (and before the first plan), the live
  tariff and carbon sources into the signal cache (HTTP in a worker thread). A source that fails
  keeps its last good data and raises a ``signal_stale`` alarm; values that change within the
  plan horizon re-plan at once.
Polling runs in the device layer's own tasks (wall time).

Mode: "auto" follows the plan; "fallback" when the last plan failed or is older than two plan
steps (or by override); "pause" (override) holds every device in its safe state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from drivers.capabilities import BatteryReading, ElectrolyserReading, EvChargerReading, MeterReading
from ems.config.loader import LoadedSite
from ems.control.safety import SafetyGuard, safe_state
from ems.inputs.site_inputs import SiteInputs, build_inputs, demand_window_column
from ems.planning.problem_builder import (
    billing_period,
    build_problem,
    floor_to_step,
    horizon_steps,
    initial_state,
    settings_from,
)
from ems.planning.state import SiteState
from ems.runtime.clock import SiteClock
from ems.runtime.devices import DeviceLinks, device_min_rate_pct, setpoint_for
from ems.runtime.dispatcher import (
    Measured,
    Wanted,
    electrolyser_input_kw,
    fallback,
    from_plan,
    hold_grid_limits,
)
from ems.runtime.forecasts import RuntimeForecaster
from ems.runtime.kpis import KpiMeter, StepSignals
from ems.runtime.metrics import ServiceMetrics
from ems.runtime.sessions import SessionTracker
from ems.signals.fetch import Get
from ems.signals.http import get as http_get
from ems.signals.site_signals import fetch_all, live_signals, signal_cache
from ems.store import SetpointWrite, Store, TelemetryRow
from optimizer import Plan, RollingPlanner
from optimizer.plan import SolverReport

log = logging.getLogger("ems.service")

Mode = Literal["auto", "fallback", "pause"]


MIN_WALL_PERIOD_S = 0.2
"""Shortest wall-clock period of the dispatch and telemetry jobs (on a fast site clock)."""


@dataclass
class Status:
    mode: Mode = "fallback"
    mode_reason: str = "no plan yet"
    override: Mode | None = None
    plan_id: int | None = None
    plan_slot: datetime | None = None
    plan_status: str | None = None
    plans_done: int = 0
    plans_failed: int = 0
    plans_skipped: int = 0
    last_plan_failed: str | None = None
    """Why the last planning attempt failed (None when it succeeded)."""
    dispatch_cycles: int = 0
    writes_failed: int = 0
    devices_online: dict[str, bool] = field(default_factory=dict)
    last_solve_s: float | None = None


class SiteService:
    def __init__(self, site: LoadedSite, store: Store, clock: SiteClock,
                 links: DeviceLinks | None = None, http: Get = http_get) -> None:
        self.site = site
        self.cfg = site.config
        self.store = store
        self.clock = clock
        self.settings = self.cfg.service
        # polling and staleness follow the site clock, within what loopback Modbus can keep up with
        # (a solve holds the interpreter for a moment: staleness is at least 1 wall second)
        poll_s = max(0.1, self.settings.poll_every_s / clock.speed)
        ttl_s = max(1.0, 3 * poll_s, self.settings.stale_after_s / clock.speed)
        self.links = links or DeviceLinks(self.cfg, poll_interval_s=poll_s, ttl_s=ttl_s,
                                          command_clock=clock.sim_seconds)
        self.status = Status()
        # readings are stamped in wall time (the device layer's clock): so is the guard's limit
        self.guard = SafetyGuard(self.cfg, staleness_s=self.links.ttl_s or 3 * self.links.poll_interval_s)
        self.sessions = SessionTracker(self.settings.ev_default_energy_kwh,
                                       self.settings.ev_default_dwell_hours)
        self.state: SiteState = initial_state(self.cfg)
        self.plan: Plan | None = None
        self.inputs: SiteInputs | None = None
        self.planner = RollingPlanner()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="solve")
        self.scheduler = AsyncIOScheduler()
        self._solving = False
        self._pending: str | None = None
        self._slot_import: list[float] = []
        self._slot: datetime | None = None
        self._online: dict[str, bool] = {}
        self._last_written: dict[tuple[str, str], float | None] = {}
        self.step_minutes = self.cfg.planning.step_minutes
        self._tasks: set[asyncio.Task[None]] = set()
        self.control_latency_s: deque[float] = deque(maxlen=10_000)
        """Meter reading → setpoint write acknowledged, wall seconds, per written command, in
        cycles while no plan is being solved; ``control_latency_during_solve_s`` for the others
        (the solve thread shares the interpreter)."""
        self.control_latency_during_solve_s: deque[float] = deque(maxlen=10_000)
        self.guard_fallbacks: set[str] = set()
        """Devices the safety guard put in their fallback in the last dispatch cycle."""
        self.reserves: dict[str, float] = {}
        """Battery -> SOC floor (fraction) set through the API, above the config's."""
        self.kpis = KpiMeter(self.cfg)
        self.forecaster = RuntimeForecaster(site, store) if self.settings.forecast == "model" else None
        self._electrolyser_min_kw: dict[str, float] = {}
        """Electrolyser -> the least its device runs at (kW), from its profile (e.g. Enapter 60 %)."""
        self.metrics = ServiceMetrics()
        self.http = http
        self.live_signals = [s.name for s in live_signals(site)]
        self.signals_fetched = 0
        """Fetch rounds done (each asks every live source once)."""
        self._last_dispatch_wall: float | None = None
        self._slot_inputs: SiteInputs | None = None
        self._slot_inputs_failed: datetime | None = None
        """Signals of the current step when no plan covers it (fallback from the start)."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._resume()
        if self.forecaster is not None:
            self.forecaster.started = self.clock.now()
        await self.links.start()
        for e in self.cfg.electrolyser:
            link = self.links.links.get(e.name)
            pct = device_min_rate_pct(link.profile) if link is not None else None
            if pct is not None:
                self._electrolyser_min_kw[e.name] = pct / 100.0 * e.rated_kw
        await self.links.first_polls(timeout_s=3 * self.links.poll_interval_s + 1.0)
        wall = self.clock.wall_seconds
        step_s = self.step_minutes * 60.0
        now = self.clock.now()
        next_slot = floor_to_step(now, self.step_minutes) + timedelta(minutes=self.step_minutes)
        first_plan = datetime.now().astimezone() + timedelta(seconds=wall((next_slot - now).total_seconds()))
        self.scheduler.add_job(self.plan_job, "interval", seconds=wall(step_s), next_run_time=first_plan,
                               id="plan", max_instances=1, coalesce=True, misfire_grace_time=5)
        period = max(MIN_WALL_PERIOD_S, wall(self.settings.dispatch_every_s),
                     self.links.poll_interval_s)
        # a cycle later than a few periods (stalled loop, service stopped) is not integrated
        self.kpis.max_gap_s = max(60.0, 5 * period * self.clock.speed)
        self.scheduler.add_job(self.dispatch_job, "interval", seconds=period, id="dispatch",
                               max_instances=1, coalesce=True, misfire_grace_time=1)
        self.scheduler.add_job(self.telemetry_job, "interval", id="telemetry", max_instances=1,
                               seconds=max(MIN_WALL_PERIOD_S, wall(self.cfg.store.telemetry_every_s)),
                               coalesce=True, misfire_grace_time=5)
        self.scheduler.add_job(self.retention_job, "interval", id="retention", max_instances=1,
                               seconds=max(1.0, wall(3600.0)), coalesce=True, misfire_grace_time=60)
        keepalive = self.links.shortest_keepalive_s()
        if keepalive is not None:
            # device watchdogs are fed between dispatch cycles too (on a fast clock they are short)
            self.scheduler.add_job(self.links.keepalive, "interval", id="keepalive", max_instances=1,
                                   seconds=max(0.05, wall(keepalive) / 2), coalesce=True,
                                   misfire_grace_time=1)
        if self.live_signals:
            await self.signals_job(replan=False)  # the first plan sees fresh prices and carbon
            self.scheduler.add_job(self.signals_job, "interval", id="signals", max_instances=1,
                                   seconds=max(1.0, wall(self.settings.signals_every_s)),
                                   coalesce=True, misfire_grace_time=60)
        self.scheduler.start()
        await self.plan_job()  # a plan at once, not at the next slot

    async def stop(self) -> None:
        """Leave every device in its safe state, then stop the jobs and the device links."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await self._write_safe_state("shutdown")
        await self.links.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self._save_state()
        self._save_kpis()

    # -- planning ----------------------------------------------------------------------------

    def request_plan(self, reason: str) -> None:
        """Plan now because of an event (skipped when a solve is running)."""
        log.info("plan requested: %s", reason)
        task = asyncio.get_running_loop().create_task(self.plan_job(reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def plan_job(self, reason: str = "slot") -> None:
        if self._solving:
            self.status.plans_skipped += 1
            if reason != "slot":
                self._pending = reason  # events during a solve coalesce into one re-plan after it
            log.info("plan skipped (%s): a solve is still running", reason)
            return
        self._solving = True
        try:
            await self._plan(reason)
            while self._pending is not None:
                reason, self._pending = f"{self._pending} (after the running solve)", None
                await self._plan(reason)
        finally:
            self._solving = False

    async def _plan(self, reason: str) -> None:
        cfg = self.cfg
        now = self.clock.now()
        slot = floor_to_step(now, self.step_minutes)
        n = horizon_steps(cfg)
        try:
            loop = asyncio.get_running_loop()
            # the first build reads the site's files (PV in a child process): off the event loop
            inputs = await loop.run_in_executor(self.executor, build_inputs, self.site, slot,
                                                slot + timedelta(minutes=self.step_minutes * n))
            inputs.sessions = self.sessions.events(now, self.step_minutes)
            if self.forecaster is not None:
                forecast = await loop.run_in_executor(self.executor, self.forecaster.forecast,
                                                      inputs.frame.index, now)
                for column in forecast.columns:
                    inputs.frame[column] = forecast[column].to_numpy()
            state = self._planning_state(now)
            built = time.perf_counter()
            problem = build_problem(self.site, self._with_margin(inputs), slot, state, settings_from(cfg))
            if self.reserves:
                problem = dataclasses.replace(problem, batteries=[
                    dataclasses.replace(b, soc_min_fraction=max(b.soc_min_fraction,
                                                                self.reserves.get(b.name, 0.0)))
                    for b in problem.batteries])
            started = loop.time()
            self.metrics.plan_build_s.observe(time.perf_counter() - built)
            plan = await loop.run_in_executor(self.executor, self.planner.solve, problem)
            solve_s = loop.time() - started
            self.metrics.solve_s.observe(solve_s)
        except Exception as exc:  # a failed plan must not stop the service: fall back
            self.status.plans_failed += 1
            self.status.last_plan_failed = f"{type(exc).__name__}: {exc}"
            self._alarm("planner", "planning_failed", "warning",
                        f"planning at {slot.isoformat()} failed: {exc}")
            log.error("plan %s failed: %s", reason, exc, extra={
                "event": "plan_failed", "slot_start": slot.isoformat(), "reason": reason,
                "error": self.status.last_plan_failed})
            self.store.add_plan(self.clock.now(), slot, self.step_minutes, "failed", str(exc), {})
            return
        self._clear_alarm("planner", "planning_failed")
        self.status.last_plan_failed = None
        self.plan, self.inputs = plan, inputs
        headline = (f"plan {slot.isoformat()} ({reason}): cost {plan.total_cost:.2f} {cfg.site.currency}, "
                    f"emissions {plan.emissions_kg:.1f} kg, {plan.solver.status} in {solve_s:.2f} s"
                    + (f", binding {', '.join(sorted(plan.binding))}" if plan.binding else ""))
        body = {"instants_utc": [t.isoformat() for t in plan.instants_utc],
                "series": {k: [float(x) for x in v] for k, v in plan.series.items()
                           if k.startswith(("grid.", "ev:")) or k.endswith(("_kw", "_kg", ".on", "_kwh"))},
                "import_price_per_kwh": inputs.frame["import_price_per_kwh"].tolist()[:n],
                "carbon_g_per_kwh": inputs.frame["carbon_g_per_kwh"].tolist()[:n]}
        self.status.plan_id = self.store.add_plan(self.clock.now(), slot, self.step_minutes,
                                                  plan.solver.status, headline, body, plan.total_cost,
                                                  plan.emissions_kg, solve_s)
        self.status.plan_slot, self.status.plan_status = slot, plan.solver.status
        self.status.plans_done += 1
        self.status.last_solve_s = solve_s
        log.info(headline, extra={
            "event": "plan", "plan_id": self.status.plan_id, "slot_start": slot.isoformat(),
            "reason": reason, "status": plan.solver.status, "cost": round(plan.total_cost, 2),
            "currency": cfg.site.currency, "emissions_kg": round(plan.emissions_kg, 1),
            "binding": sorted(plan.binding), "solve_s": round(solve_s, 3)})

    def _with_margin(self, inputs: SiteInputs) -> SiteInputs:
        """The inputs a plan sees: the import limit less ``service.plan_import_margin_fraction``
        (the dispatcher holds the full limit, from the meter)."""
        margin = self.settings.plan_import_margin_fraction
        if margin <= 0:
            return inputs
        frame = inputs.frame.copy()
        frame["import_limit_kw"] = frame["import_limit_kw"] * (1.0 - margin)
        return dataclasses.replace(inputs, frame=frame)

    def _planning_state(self, now: datetime) -> SiteState:
        """The state a plan starts from: measured where the devices say, else the previous plan's
        expectation, else the config's initial values."""
        state = self.state
        for b in self.cfg.battery:
            r = self.links.reading(b.name)
            soc = r.soc_pct.value if isinstance(r, BatteryReading) else None
            if soc is not None and math.isfinite(soc):
                state.battery_soc_kwh[b.name] = soc / 100.0 * b.capacity_kwh
            elif self.plan is not None:
                state.battery_soc_kwh[b.name] = self._expected(f"{b.name}.soc_kwh", now,
                                                               state.battery_soc_kwh.get(b.name, 0.0))
        # tanks: the estimate the dispatch cycles keep (see _track_tanks)
        for e in self.cfg.electrolyser:
            r = self.links.reading(e.name)
            running = r.state.value if isinstance(r, ElectrolyserReading) else None
            if running is not None:
                on = running == "steady"
                if state.electrolyser_on.get(e.name) != on:
                    state.electrolyser_steps_in_state[e.name] = 0
                state.electrolyser_on[e.name] = on
        state.ev_delivered_kwh = {s.session_id: s.delivered_kwh for s in self.sessions.active.values()}
        period = billing_period(now, self.cfg.site.timezone)
        if state.billing_period != period:
            state.billing_period, state.peak_import_kw, state.demand_peaks_kw = period, 0.0, {}
        return state

    def _expected(self, key: str, now: datetime, default: float) -> float:
        """The previous plan's value of state series ``key`` at ``now`` (end-of-step values)."""
        assert self.plan is not None
        series = self.plan.series.get(key)
        if not series:
            return default
        k = self._plan_step(now)
        if k is None:
            return default
        return float(series[k - 1]) if k > 0 else default

    def _plan_step(self, now: datetime) -> int | None:
        if self.plan is None:
            return None
        k = int((now - self.plan.instants_utc[0]).total_seconds() // (self.step_minutes * 60))
        return k if 0 <= k < len(self.plan.instants_utc) else None

    # -- dispatch ----------------------------------------------------------------------------

    def measured(self) -> Measured:
        cfg = self.cfg

        def value(reading: Any, name: str) -> Any:
            return getattr(reading, name).value if reading is not None else None

        grid = self.links.reading("grid") if "grid" in self.links.links else None
        m = Measured(
            grid_net_kw=value(grid, "power_net_kw") if isinstance(grid, MeterReading) else None,
            battery_net_kw={b.name: value(self.links.reading(b.name), "power_net_kw") for b in cfg.battery},
            ev_kw={c.name: value(self.links.reading(c.name), "power_kw") for c in cfg.ev_charger},
            electrolyser_kw={e.name: electrolyser_input_kw(e, self.links.reading(e.name))
                             for e in cfg.electrolyser},
            battery_soc_fraction={}, plugged={})
        for b in cfg.battery:
            soc = value(self.links.reading(b.name), "soc_pct")
            m.battery_soc_fraction[b.name] = soc / 100.0 if soc is not None else None
        for c in cfg.ev_charger:
            r = self.links.reading(c.name)
            m.plugged[c.name] = bool(r.plugged.value) if isinstance(r, EvChargerReading) else False
        for p in cfg.pv:
            m.pv_kw[p.name] = value(self.links.reading(p.name), "power_kw")
        for e in cfg.electrolyser:
            tank = next((t for t in cfg.hydrogen_tank if t.name == e.tank), None)
            level = self.state.tank_kg.get(e.tank)
            m.tank_fraction[e.name] = level / tank.capacity_kg if tank and level is not None else None
        return m

    async def dispatch_job(self) -> None:
        began = time.perf_counter()
        if self._last_dispatch_wall is not None:
            self.metrics.dispatch_interval_s.observe(began - self._last_dispatch_wall)
        self._last_dispatch_wall = began
        try:
            await self._dispatch()
        finally:
            self.metrics.dispatch_cycle_s.observe(time.perf_counter() - began)

    async def _dispatch(self) -> None:
        now = self.clock.now()
        self.status.dispatch_cycles += 1
        # act on the meter and the batteries as they are now, read together: a battery reading
        # older than the meter's would show the last command's effect on the grid but not its
        # cause, and the correction would swing back and forth
        now_read = [n for n in ("grid", *(b.name for b in self.cfg.battery)) if n in self.links.links]
        await asyncio.gather(*(self.links.refresh(n) for n in now_read))
        self._watch_devices()
        for c in self.cfg.ev_charger:
            r = self.links.reading(c.name)
            if isinstance(r, EvChargerReading):
                change = self.sessions.observe(c.name, r.plugged.value, r.session_energy_kwh.value, now)
                if change:
                    self._save_state()
                    self.request_plan(f"EV {change} at {c.name}")
        measured = self.measured()
        self._note_import(now, measured.grid_net_kw)
        self._count_kpis(now, measured)
        mode, reason = self._mode(now)
        if mode != self.status.mode:
            log.info("mode %s -> %s: %s", self.status.mode, mode, reason, extra={
                "event": "mode", "from": self.status.mode, "to": mode, "reason": reason})
        self.status.mode, self.status.mode_reason = mode, reason
        if mode == "pause":
            await self._write_safe_state("pause")
            return
        step = self._plan_step(now)
        import_limit, export_limit = self._limits(now)
        if mode == "auto" and self.plan is not None and step is not None:
            on_charger = {s.charger: s.session_id for s in self.sessions.active.values()}
            wanted = from_plan(self.plan, step, self.cfg, measured, on_charger,
                               self._import_ceiling(step, import_limit))
        else:
            wanted = fallback(self.cfg, measured)
        hold_grid_limits(wanted, self.cfg, measured, import_limit, export_limit, self._electrolyser_min_kw)
        log.debug("dispatch %s %s: measured %s; wanted %s", now.isoformat(), mode, measured, wanted)
        await self._apply(now, wanted, mode, step, import_limit, export_limit)
        await self.links.keepalive()

    def _import_ceiling(self, step: int, import_limit_kw: float) -> float:
        """Import the grid may take beyond the plan before the batteries cover forecast error
        (kW). The import limit, unless a demand charge counts the step, the plan is below its
        (margined) import limit and the batteries hold more energy than the plan expects now:
        then the billing period's peak so far (or the plan's own import, when higher), since more
        would raise the charge. Energy the plan counts on is kept for the limits and prices it
        was planned for."""
        now = self.clock.now()
        row = self._step_row(now)
        if not self.cfg.grid.demand_charges or self.plan is None or row is None:
            return import_limit_kw
        planned = float(self.plan.series["grid.import_kw"][step])
        if planned >= import_limit_kw * (1.0 - self.settings.plan_import_margin_fraction) - 1.0:
            # the plan is at its import limit: the margin it kept is for forecast error
            return import_limit_kw
        if self._stored_kwh() <= self._expected_stored_kwh(now) + 1.0:
            # no energy beyond what the plan counts on (for its limits and prices): keep it
            return import_limit_kw
        ceiling = import_limit_kw
        for k in range(len(self.cfg.grid.demand_charges)):
            if bool(row[demand_window_column(k)]):  # this charge counts the current step
                ceiling = min(ceiling, max(planned, self.state.demand_peak_kw(k)))
        return ceiling

    def _stored_kwh(self) -> float:
        """Energy in the batteries now, by their SOC readings (kWh; a missing one counts 0)."""
        total = 0.0
        for b in self.cfg.battery:
            r = self.links.reading(b.name)
            soc = r.soc_pct.value if isinstance(r, BatteryReading) else None
            total += soc / 100.0 * b.capacity_kwh if soc is not None else 0.0
        return total

    def _expected_stored_kwh(self, now: datetime) -> float:
        """Energy the plan expects in the batteries now (kWh)."""
        return sum(self._expected(f"{b.name}.soc_kwh", now, self.state.battery_soc_kwh.get(b.name, 0.0))
                   for b in self.cfg.battery)

    def _mode(self, now: datetime) -> tuple[Mode, str]:
        if self.status.override is not None:
            return self.status.override, "override"
        if self.status.last_plan_failed is not None:
            return "fallback", f"planning failed: {self.status.last_plan_failed}"
        if self.plan is None:
            return "fallback", "no plan yet"
        age = now - self.plan.instants_utc[0]
        if age > timedelta(minutes=2 * self.step_minutes):
            return "fallback", f"plan is {age.total_seconds() / 60:.0f} min old"
        if self.status.plan_status not in ("optimal", "feasible", "relaxed"):
            return "fallback", f"plan status {self.status.plan_status}"
        return "auto", "following the plan"

    def _step_row(self, now: datetime) -> Any:
        """The inputs row (prices, carbon, limits, demand windows) of the step holding ``now``:
        from the current plan's inputs, else built for this step alone; None when it cannot be
        built (e.g. no signal data)."""
        for inputs in (self.inputs, self._slot_inputs):
            if inputs is not None:
                frame = inputs.frame
                k = frame.index.searchsorted(now, side="right") - 1
                if 0 <= k < len(frame) and now < frame.index[k] + timedelta(minutes=self.step_minutes):
                    return frame.iloc[k]
        slot = floor_to_step(now, self.step_minutes)
        if slot == self._slot_inputs_failed:
            return None  # tried for this step already: no file reads on every cycle
        try:
            self._slot_inputs = build_inputs(self.site, slot, slot + timedelta(minutes=self.step_minutes))
        except Exception as exc:  # the limits then come from the config; KPIs count energy only
            log.warning("no inputs for the step at %s: %s", slot.isoformat(), exc)
            self._slot_inputs, self._slot_inputs_failed = None, slot
            return None
        return self._slot_inputs.frame.iloc[0]

    def _limits(self, now: datetime) -> tuple[float, float]:
        row = self._step_row(now)
        if row is not None:
            return float(row["import_limit_kw"]), float(row["export_limit_kw"])
        return self.cfg.grid.import_limit_kw, self.cfg.grid.export_limit_kw

    async def _apply(self, now: datetime, wanted: Wanted, mode: Mode, step: int | None,
                     import_limit: float, export_limit: float) -> None:
        readings = {name: self.links.reading(name) for name in self.links.links}
        result = self.guard.check(wanted, readings, self.links.poller.utc()
                                  if self.links.poller else now)
        self.guard_fallbacks = set(result.fallback_devices)
        for event in result.raised:
            self._alarm(event.device, event.code, event.severity, event.message)
        for event in result.cleared:
            self._clear_alarm(event.device, event.code)
        price = carbon = None
        row = self._step_row(now)
        if row is not None:
            price, carbon = float(row["import_price_per_kwh"]), float(row["carbon_g_per_kwh"])
        safe = result.setpoints
        values: dict[str, tuple[str, Any, float | None]] = {}
        for b in self.cfg.battery:
            values[b.name] = ("battery", b, safe.battery_net_kw.get(b.name, 0.0))
        for c in self.cfg.ev_charger:
            values[c.name] = ("ev_charger", c, safe.ev_kw.get(c.name, 0.0))
        for e in self.cfg.electrolyser:
            values[e.name] = ("electrolyser", e, safe.electrolyser_kw.get(e.name, 0.0))
        for p in self.cfg.pv:
            values[p.name] = ("pv", p, safe.pv_limit_kw.get(p.name))
        setpoints = {name: sp for name, (section, asset, value) in values.items()
                     if name in self.links.links and (sp := setpoint_for(section, asset, value)) is not None}
        # each device has its own connection: write them side by side
        written = await asyncio.gather(*(self.links.write(n, sp) for n, sp in setpoints.items()))
        for name, outcomes in zip(setpoints, written, strict=True):
            limits = {why: 1.0 for why in wanted.bound_by.get(name, [])}
            limits.update({f"guard: {why}": 1.0 for why in result.bound_by.get(name, [])})
            limits["grid_import_limit_kw"] = import_limit
            limits["grid_export_limit_kw"] = export_limit
            if any(o.written and o.error is None for o in outcomes):
                self._note_latency(readings.get("grid"))
            for o in outcomes:
                # the audit log keeps every new value (a keep-alive may carry one too) and every error
                key = (name, o.command)
                if o.error is None and not (o.written and self._last_written.get(key) != o.value):
                    continue
                if o.written:
                    self._last_written[key] = o.value
                if o.error is not None:
                    self.status.writes_failed += 1
                    self.metrics.write_failures.labels(name).inc()
                self.store.add_setpoint(SetpointWrite(
                    ts=now, device=name, command=o.command, value=o.value, mode=mode,
                    ok=o.error is None and o.readback != "readback_mismatch",
                    plan_id=self.status.plan_id if mode == "auto" else None,
                    slot_start=self.status.plan_slot if mode == "auto" else None,
                    price_per_kwh=price, carbon_g_per_kwh=carbon, limits=limits,
                    readback=o.readback_value, error=o.error))

    async def _write_safe_state(self, why: str) -> None:
        safe = safe_state(self.cfg)
        for b in self.cfg.battery:
            value = safe.battery_net_kw.get(b.name, 0.0)
            await self._write_plain(b.name, setpoint_for("battery", b, value), why)
        for c in self.cfg.ev_charger:
            await self._write_plain(c.name, setpoint_for("ev_charger", c, safe.ev_kw.get(c.name, 0.0)), why)
        for e in self.cfg.electrolyser:
            await self._write_plain(e.name, setpoint_for("electrolyser", e, 0.0), why)
        for p in self.cfg.pv:
            await self._write_plain(p.name, setpoint_for("pv", p, None), why)

    async def _write_plain(self, name: str, setpoint: Any, why: str) -> None:
        if name not in self.links.links or setpoint is None:
            return
        for o in await self.links.write(name, setpoint):
            if o.written or o.error:
                self.store.add_setpoint(SetpointWrite(
                    ts=self.clock.now(), device=name, command=o.command, value=o.value, mode="safe",
                    ok=o.error is None, limits={f"safe state: {why}": 1.0}, readback=o.readback_value,
                    error=o.error))

    # -- signals -----------------------------------------------------------------------------

    async def signals_job(self, replan: bool = True) -> None:
        """Fetch every live signal into the cache; re-plan when values in the horizon changed."""
        now = self.clock.now()
        slot = floor_to_step(now, self.step_minutes)
        end = slot + timedelta(minutes=self.step_minutes * horizon_steps(self.cfg))
        cache = signal_cache(self.site, clock=self.clock.now)
        before = {name: _window(cache.load(name), slot, end) for name in self.live_signals}
        try:
            outcomes = await asyncio.to_thread(fetch_all, self.site, now, self.http, cache)
        except Exception as exc:  # e.g. the cache directory is not writable: keep running
            self._alarm("signals", "signal_fetch_failed", "warning", f"fetching signals failed: {exc}")
            return
        self.signals_fetched += 1
        changed = []
        for o in outcomes:
            name, where = o.signal.name, f"{o.signal.config_field} ({o.signal.provider})"
            if o.result is None or o.result.stale:
                why = o.error or (o.result.message if o.result is not None else None) or "no data"
                self._alarm(f"signal:{name}", "signal_stale", "warning",
                            f"{where}: {why}; planning goes on with the last good data")
                continue
            self._clear_alarm(f"signal:{name}", "signal_stale")
            if _window(o.result, slot, end) != before.get(name):
                changed.append(name)
        if changed:
            log.info("new signal data: %s", ", ".join(changed),
                     extra={"event": "signals", "changed": changed})
            if replan:
                self.request_plan(f"new {', '.join(changed)} data")

    # -- records -----------------------------------------------------------------------------

    async def telemetry_job(self) -> None:
        now = self.clock.now()
        rows = []
        for name in self.links.links:
            r = self.links.reading(name)
            if r is None:
                continue
            for field_name in r.UNITS:
                m = getattr(r, field_name)
                v = m.value
                if isinstance(v, bool):
                    v = float(v)
                if v is None or isinstance(v, int | float):
                    rows.append(TelemetryRow(now, name, field_name, None if v is None else float(v),
                                             m.reason if v is None else None))
        self.store.add_telemetry(rows)
        self._save_kpis()
        self._save_state()  # the tank estimate moves every cycle

    async def retention_job(self) -> None:
        """Delete telemetry, plans and setpoint writes older than the configured retention."""
        now = self.clock.now()
        st = self.cfg.store
        removed = self.store.purge(
            telemetry_before=now - timedelta(days=st.telemetry_retention_days),
            plans_before=now - timedelta(days=st.plan_retention_days),
            setpoints_before=now - timedelta(days=st.plan_retention_days))
        if any(removed.values()):
            log.info("retention: removed %s", removed)

    def _watch_devices(self) -> None:
        for name in self.links.links:
            online = self.links.online(name)
            before = self._online.get(name)
            self._online[name] = online
            if before is None or before == online:
                continue
            if online:
                self._clear_alarm(name, "device_offline")
                self.request_plan(f"device {name} back")
            else:
                self._alarm(name, "device_offline", "critical",
                            f"device {name} does not answer; safe fallback")
                self.request_plan(f"device {name} lost")
        self.status.devices_online = dict(self._online)

    def _note_import(self, now: datetime, grid_net_kw: float | None) -> None:
        """Track each step's average import: the billing-period peak of every demand charge
        whose window holds the step (kept in the store), and the KPIs' peaks."""
        slot = floor_to_step(now, self.step_minutes)
        if self._slot is not None and slot != self._slot and self._slot_import:
            average = sum(self._slot_import) / len(self._slot_import)
            period = billing_period(self._slot, self.cfg.site.timezone)
            if self.state.billing_period != period:
                self.state.billing_period, self.state.peak_import_kw = period, 0.0
                self.state.demand_peaks_kw = {}
            row = self._step_row(self._slot)
            windows = [bool(row[demand_window_column(k)]) if row is not None else True
                       for k in range(len(self.cfg.grid.demand_charges))]
            for k, counted in enumerate(windows):
                if counted:
                    self.state.note_demand(k, average)
            if not self.cfg.grid.demand_charges:
                self.state.peak_import_kw = max(self.state.peak_import_kw, average)
            self.kpis.note_step_import(self._slot, average, windows)
            self._slot_import = []
            self._save_state()
        self._slot = slot
        if grid_net_kw is not None:
            self._slot_import.append(max(0.0, grid_net_kw))

    def _count_kpis(self, now: datetime, m: Measured) -> None:
        row = self._step_row(now)
        signals = None
        if row is not None:
            average = row.get("carbon_average_g_per_kwh", row["carbon_g_per_kwh"])
            marginal = row.get("carbon_marginal_g_per_kwh") if len(self.cfg.grid.carbon) == 2 else None
            signals = StepSignals(float(row["import_price_per_kwh"]), float(row["export_price_per_kwh"]),
                                  float(average), None if marginal is None else float(marginal))
        totals: dict[str, float | None] = {}
        flows: dict[str, float | None] = {}
        for e in self.cfg.electrolyser:
            r = self.links.reading(e.name)
            if isinstance(r, ElectrolyserReading):
                totals[e.name], flows[e.name] = r.h2_total_kg.value, r.h2_flow_kg_per_h.value
        self.kpis.add(now, m, signals, totals, flows)
        self._track_tanks(row)

    def _track_tanks(self, row: Any) -> None:
        """Hydrogen tank levels (kg): a tank level the electrolyser reports, else the last estimate
        plus what the electrolysers produced (``self.kpis.hydrogen_kg``) minus the configured
        offtake over the interval the KPIs just counted, within [0, capacity]."""
        dt_h = self.kpis.interval_h
        step_h = self.step_minutes / 60.0
        for t in self.cfg.hydrogen_tank:
            level = self.state.tank_kg.get(t.name, t.initial_kg)
            measured = None
            for e in self.cfg.electrolyser:
                if e.tank != t.name:
                    continue
                r = self.links.reading(e.name)
                pct = r.tank_level_pct.value if isinstance(r, ElectrolyserReading) else None
                if pct is not None and math.isfinite(pct):
                    measured = pct / 100.0 * t.capacity_kg
                level += self.kpis.hydrogen_kg.get(e.name, 0.0)
            if row is not None:
                for off in self.cfg.hydrogen_offtake:
                    if off.tank == t.name:
                        level -= float(row[f"h2:{off.name}_kg"]) / step_h * dt_h
            self.state.tank_kg[t.name] = measured if measured is not None else \
                min(t.capacity_kg, max(0.0, level))

    def _save_kpis(self) -> None:
        for period, values in self.kpis.changed().items():
            self.store.set_kpis(period, values)

    def _note_latency(self, meter: Any) -> None:
        """Wall seconds from the meter reading the cycle acted on to this write's acknowledgement."""
        if isinstance(meter, MeterReading) and self.links.poller is not None:
            age = (self.links.poller.utc() - meter.power_net_kw.timestamp).total_seconds()
            (self.control_latency_during_solve_s if self._solving else self.control_latency_s).append(age)
            self.metrics.control_latency_s.labels("yes" if self._solving else "no").observe(age)

    def _alarm(self, device: str, code: str, severity: str, message: str) -> None:
        alarm_id = self.store.raise_alarm(self.clock.now(), device, code, severity, message)
        if alarm_id is not None:
            self.metrics.alarms.labels(device, code).inc()
            log.warning("alarm %s %s (%s): %s", device, code, severity, message, extra={
                "event": "alarm", "alarm_id": alarm_id, "device": device, "code": code,
                "severity": severity})

    def _clear_alarm(self, device: str, code: str) -> None:
        if self.store.clear_alarm(self.clock.now(), device, code):
            log.info("alarm %s %s cleared", device, code, extra={
                "event": "alarm_cleared", "device": device, "code": code})

    def _save_state(self) -> None:
        now = self.clock.now()
        self.store.put_state("billing", {"period": self.state.billing_period,
                                         "peak_import_kw": self.state.peak_import_kw,
                                         "demand_peaks_kw": self.state.demand_peaks_kw}, now)
        self.store.put_state("tank_kg", self.state.tank_kg, now)
        self.store.put_state("electrolyser_on", self.state.electrolyser_on, now)
        self.store.put_state("ev_sessions", self.sessions.to_json(), now)
        self.store.put_state("override", self.status.override, now)
        self.store.put_state("reserves", self.reserves, now)

    def _resume(self) -> None:
        """Billing-period peak, tank levels, electrolyser state, EV sessions and the override from
        the store, when the service ran before."""
        billing = self.store.get_state("billing")
        if billing:
            self.state.billing_period = billing["period"]
            self.state.peak_import_kw = float(billing["peak_import_kw"])
            self.state.demand_peaks_kw = {int(k): float(v)
                                          for k, v in (billing.get("demand_peaks_kw") or {}).items()}
        _, month = self.kpis.periods(self.clock.now())
        self.kpis.values.update(self.store.kpis(month))  # the month's row and its days' rows
        self.state.tank_kg.update(self.store.get_state("tank_kg", {}) or {})
        self.state.electrolyser_on.update(self.store.get_state("electrolyser_on", {}) or {})
        self.sessions.restore(self.store.get_state("ev_sessions", []) or [])
        self.status.override = self.store.get_state("override")
        self.reserves = dict(self.store.get_state("reserves", {}) or {})
        self._resume_plan()

    def _resume_plan(self) -> None:
        """The last stored plan, followed until the first new one is ready (while it is no more
        than two slots old, as any plan)."""
        latest = self.store.latest_plan()
        if not latest or latest["status"] not in ("optimal", "feasible", "relaxed"):
            return
        body = latest["body"]
        try:
            plan = Plan(instants_utc=[datetime.fromisoformat(t) for t in body["instants_utc"]],
                        step_minutes=int(latest["step_minutes"]), series=dict(body["series"]),
                        costs={"stored": float(latest["total_cost"] or 0.0)},
                        emissions_kg=float(latest["emissions_kg"] or 0.0), slacks=[],
                        solver=SolverReport(latest["status"], "stored", 0.0, 0.0, None, False, 0))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("the last stored plan cannot be resumed: %s", exc)
            return
        self.plan = plan
        self.status.plan_id, self.status.plan_slot = int(latest["id"]), latest["slot_start"]
        self.status.plan_status = latest["status"]

    def set_reserve(self, battery: str, soc_min_fraction: float) -> None:
        """Keep at least this SOC in ``battery`` (e.g. backup reserve) from the next plan on."""
        self.reserves[battery] = soc_min_fraction
        self._save_state()
        self.request_plan(f"reserve {battery} {soc_min_fraction:.0%}")

    def set_override(self, mode: Mode | None) -> None:
        self.status.override = mode
        self._save_state()
        self.request_plan(f"override {mode or 'cleared'}")


def _window(signal: Any, start: datetime, end: datetime) -> tuple[tuple[str, float], ...] | None:
    """A signal's values in [start, end) as comparable pairs (None when there is no signal)."""
    if signal is None:
        return None
    values = signal.values
    part = values[(values.index >= start) & (values.index < end)]
    return tuple((t.isoformat(), round(float(v), 9)) for t, v in part.items())
