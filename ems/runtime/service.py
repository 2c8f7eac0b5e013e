"""The site service: it schedules the jobs and wires the parts; each part does one job.

The jobs run on one event loop, timed by a scheduler (:mod:`ems.runtime.scheduling`: APScheduler
on wall time for ``ems run``, or stepped on a clock that waits for the service, in tests):

- plan (:mod:`ems.runtime.planning`): every plan step, aligned to the step start (site clock),
  and on events (EV plugged in or out, device lost or back, new signal data, an operator's
  change). The solve runs in a worker thread.
- dispatch (:mod:`ems.runtime.dispatch`): every ``service.dispatch_every_s`` of site time: the
  cycle's snapshot, the controller's decision (:mod:`ems.control.controller`, the same
  controller the what-if runs), the writes; the readings are booked (:mod:`ems.runtime.booking`).
- telemetry, retention, keep-alive, signals (:mod:`ems.runtime.signals_job`).
Polling runs in the device layer's own tasks (wall time), or on demand at each stepped instant.
State that survives a restart is in :mod:`ems.runtime.persistence`; the API and metrics read
:mod:`ems.runtime.view`.

Mode: "auto" follows the plan; "fallback" when the last plan failed or is older than two plan
steps (or by override); "pause" (override) holds every device in its safe state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from datetime import timedelta

from drivers.capabilities import EvChargerReading
from ems.config.loader import LoadedSite
from ems.control.controller import Controller, ControllerSettings, Mode, PlanInput
from ems.control.estimate import StateEstimator, TankEstimator
from ems.control.targets import rule_electrolyser_kw
from ems.inputs.site_inputs import SiteInputs
from ems.planning.problem_builder import floor_to_step, initial_state
from ems.planning.state import SiteState
from ems.runtime.alarms import Alarms
from ems.runtime.booking import Booking
from ems.runtime.clock import Clock
from ems.runtime.dispatch import Dispatch, Writer
from ems.runtime.forecasts import RuntimeForecaster
from ems.runtime.metrics import ServiceMetrics
from ems.runtime.persistence import resume_state, save_state, stored_plan
from ems.runtime.planning import Planning
from ems.runtime.scheduling import Scheduler, WallScheduler
from ems.runtime.sessions import SessionTracker, expected_from_config
from ems.runtime.signals_job import LiveSignals
from ems.runtime.step_rows import StepRows
from ems.runtime.view import ServiceStatus, SiteView, site_view
from ems.signals.fetch import Get
from ems.signals.http import get as http_get
from ems.site.commands import electrolyser_minimums
from ems.site.modbus import DeviceLinks
from ems.store import Store
from optimizer import Plan, RollingPlanner

log = logging.getLogger("ems.service")

MIN_WALL_PERIOD_S = 0.2
"""Shortest wall-clock period of the dispatch and telemetry jobs (on a fast site clock)."""


class SiteService:
    def __init__(self, site: LoadedSite, store: Store, clock: Clock,
                 links: DeviceLinks | None = None, http: Get = http_get,
                 scheduler: Scheduler | None = None) -> None:
        """``scheduler`` times the jobs and the polls (default: wall time, APScheduler; a
        :class:`~ems.runtime.scheduling.SteppedScheduler` with its stepped clock for tests)."""
        self.site = site
        self.cfg = cfg = site.config
        self.store = store
        self.clock = clock
        self.settings = cfg.service
        self.scheduler: Scheduler = scheduler or WallScheduler(clock)
        # polling and staleness follow the site clock, within what loopback Modbus can keep up with
        # (a solve holds the interpreter for a moment: staleness is at least 1 wall second)
        poll_s = max(0.1, self.settings.poll_every_s / clock.speed)
        ttl_s = max(1.0, 3 * poll_s, self.settings.stale_after_s / clock.speed)
        self.links = links or self.scheduler.device_links(cfg, poll_s, ttl_s)
        self.step_minutes = cfg.planning.step_minutes
        self.metrics = ServiceMetrics()
        self.alarms = Alarms(store, self.metrics, clock.now)
        self.sessions = SessionTracker(self.settings.ev_default_energy_kwh,
                                       self.settings.ev_default_dwell_hours, expected_from_config(cfg))
        self.state: SiteState = initial_state(cfg)
        self.tanks = TankEstimator(cfg)
        self.estimator = StateEstimator(cfg, self.state, self.tanks)
        # readings are stamped in wall time (the device layer's clock): so is the guard's limit
        self.controller = Controller(cfg, ControllerSettings(
            period_s=self.settings.dispatch_every_s,
            plan_import_margin_fraction=self.settings.plan_import_margin_fraction,
            staleness_s=self.links.ttl_s or 3 * self.links.poll_interval_s,
            previous_plan_valid_h=self.settings.previous_plan_valid_h,
            electrolyser_min_kw=electrolyser_minimums(cfg)))
        forecaster = RuntimeForecaster(site, store) if self.settings.forecast == "model" else None
        self.planning = Planning(site, store, clock.now, self.sessions, self.estimator,
                                 self.controller.reserves, self.alarms, self.metrics, forecaster)
        self.planning.on_plan.append(self._new_plan)
        self.forecaster = forecaster
        self.rows = StepRows(site, lambda: self.planning.inputs)
        self.booking = Booking(cfg, store, self.state, self.tanks, self.rows, clock.now)
        self.booking.step_done.append(self._save_state)
        # a cycle waits for no device longer than this (wall s): a silent one is read later
        budget_s = max(0.05, min(0.5, 0.25 * self.settings.dispatch_every_s / clock.speed))
        self.writer = Writer(cfg, self.links, store, self.metrics, budget_s)
        self.dispatch = Dispatch(cfg, self.links, self.controller, self.writer, self.alarms, self.metrics,
                                 budget_s)
        self.writer.on_written.append(lambda _name: self._note_latency())
        self.signals = LiveSignals(site, http, clock.now, self.alarms, self.request_plan)
        self._online: dict[str, bool] = {}
        self._armed: dict[str, bool] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_dispatch_wall: float | None = None
        self.control_latency_s: deque[float] = deque(maxlen=10_000)
        """Meter reading → setpoint write acknowledged, wall seconds, per written device, in cycles
        while no plan is being solved; ``control_latency_during_solve_s`` for the others."""
        self.control_latency_during_solve_s: deque[float] = deque(maxlen=10_000)

    # -- what the API, metrics and tests read ------------------------------------------------

    @property
    def status(self) -> ServiceStatus:
        p, d = self.planning.status, self.dispatch.status
        return ServiceStatus(
            mode=d.mode, mode_reason=d.mode_reason, override=self.controller.override,
            plan_id=p.plan_id, plan_slot=p.plan_slot, plan_status=p.plan_status, plans_done=p.plans_done,
            plans_failed=p.plans_failed, plans_skipped=p.plans_skipped, last_plan_failed=p.last_plan_failed,
            dispatch_cycles=d.dispatch_cycles, writes_failed=self.writer.writes_failed,
            devices_online=dict(self._online), last_solve_s=p.last_solve_s)

    @property
    def plan(self) -> Plan | None:
        return self.planning.plan

    @property
    def inputs(self) -> SiteInputs | None:
        return self.planning.inputs

    @property
    def planner(self) -> RollingPlanner:
        return self.planning.planner

    @property
    def _solving(self) -> bool:
        return self.planning.solving

    @property
    def guard_fallbacks(self) -> set[str]:
        return self.dispatch.status.guard_fallbacks

    @property
    def reserves(self) -> dict[str, float]:
        return self.controller.reserves

    def measured(self) -> SiteView:
        return site_view(self.cfg, {name: self.links.reading(name) for name in self.links.links})

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._resume()
        if self.forecaster is not None:
            self.forecaster.started = self.clock.now()
        await self.links.start()
        await self.links.first_polls(timeout_s=3 * self.links.poll_interval_s + 1.0)
        now = self.clock.now()
        next_slot = floor_to_step(now, self.step_minutes) + timedelta(minutes=self.step_minutes)
        # periods in site seconds; a fast clock has a shortest wall period (in site seconds here)
        speed = self.clock.speed
        shortest_s = MIN_WALL_PERIOD_S * speed
        jobs = self.scheduler
        jobs.watch(self.links, self._tasks)
        jobs.add_job(self.plan_job, "plan", self.step_minutes * 60.0, first_at=next_slot, misfire_grace_s=5)
        # a cycle no more often than the devices are polled
        period_s = max(shortest_s, self.settings.dispatch_every_s, self.settings.poll_every_s)
        # a cycle later than a few periods (stalled loop, service stopped) is not integrated
        self.booking.kpis.max_gap_s = max(60.0, 5 * period_s)
        jobs.add_job(self.dispatch_job, "dispatch", period_s, misfire_grace_s=1, reads_devices=True)
        jobs.add_job(self.telemetry_job, "telemetry", max(shortest_s, self.cfg.store.telemetry_every_s),
                     misfire_grace_s=5, reads_devices=True)
        jobs.add_job(self.retention_job, "retention", max(1.0 * speed, 3600.0), misfire_grace_s=60)
        keepalive = self.links.shortest_keepalive_s()
        if keepalive is not None:
            # device watchdogs are fed between dispatch cycles too (on a fast clock they are short)
            jobs.add_job(self.keepalive_job, "keepalive", max(0.05 * speed, keepalive / 2), misfire_grace_s=1)
        if self.signals.names:
            await self.signals.fetch(replan=False)  # the first plan sees fresh prices and carbon
            jobs.add_job(self.signals.fetch, "signals", max(1.0 * speed, self.settings.signals_every_s),
                         misfire_grace_s=60)
        jobs.start()
        await self.plan_job()  # a plan at once, not at the next slot

    async def stop(self) -> None:
        """Leave every device in its safe state, then stop the jobs and the device links."""
        self.scheduler.shutdown()
        await self.scheduler.settle()  # a dispatch cycle still writing ends before the safe state
        await self.writer.safe_state(self.clock.now(), "shutdown")
        await self.scheduler.settle()  # stepped: the safe-state writes end before the links stop
        await self.links.stop()
        self.planning.shutdown()
        self._save_state()
        self.booking.save_kpis()

    # -- jobs --------------------------------------------------------------------------------

    def request_plan(self, reason: str) -> None:
        """Plan now because of an event (coalesced while a solve is running)."""
        log.info("plan requested: %s", reason)
        task = asyncio.get_running_loop().create_task(self.plan_job(reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def plan_job(self, reason: str = "slot") -> None:
        await self.planning.run(reason)

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
        readings = await self.dispatch.read()
        self._watch_devices()
        for c in self.cfg.ev_charger:
            r = readings.get(c.name)
            if isinstance(r, EvChargerReading):
                change = self.sessions.observe(c.name, r.plugged.value, r.session_energy_kwh.value, now)
                if change:
                    self._save_state()
                    self.request_plan(f"EV {change} at {c.name}")
        self.booking.cycle(now, readings)
        self.estimator.observe(readings, now)
        active = self.sessions.active.values()
        plan = PlanInput(self.planning.plan, self.planning.status.last_plan_failed,
                         {s.charger: s.session_id for s in active},
                         {s.charger: s.departure_utc for s in active})
        snap = self.dispatch.snapshot(now, readings, self.tanks.level_kg)
        decision = await self.dispatch.decide_and_write(
            snap, plan, self.rows.slot(now, self.state), self.rows.row(now),
            self.planning.status.plan_id, self.planning.status.plan_slot)
        log.debug("dispatch %s %s: wanted %s; written %s", now.isoformat(), decision.mode,
                  decision.wanted, decision.setpoints)

    async def keepalive_job(self) -> None:
        await self.links.keepalive_many(self.dispatch.budget_s)

    async def telemetry_job(self) -> None:
        self.booking.telemetry({name: self.links.reading(name) for name in self.links.links})
        self._save_state()  # the tank estimate moves every cycle

    async def retention_job(self) -> None:
        # in a worker thread, in batches: a long delete never holds up the control jobs
        await asyncio.to_thread(self.booking.purge)

    # -- events and records ------------------------------------------------------------------

    def _new_plan(self, plan: Plan, inputs: SiteInputs) -> None:
        if not self.controller.settings.electrolyser_rule_kw and self.cfg.electrolyser:
            rule = rule_electrolyser_kw(self.cfg, inputs.frame, self.step_minutes)
            self.controller.settings = ControllerSettings(**{**vars(self.controller.settings),
                                                              "electrolyser_rule_kw": rule})

    def _watch_devices(self) -> None:
        # every configured device, linked or not yet set up (a SunSpec device down at start)
        for name in self.links.configured:
            online = self.links.online(name)
            before = self._online.get(name)
            self._online[name] = online
            if before == online or (before is None and online):
                continue
            if online:
                self.alarms.clear(name, "device_offline")
                self.request_plan(f"device {name} back")
            else:
                self.alarms.raise_(name, "device_offline", "critical",
                                   f"device {name} does not answer; safe fallback")
                self.request_plan(f"device {name} lost")
        for name, watchdog in self.links.watchdogs.items():
            armed_before = self._armed.get(name)
            self._armed[name] = watchdog.armed
            if armed_before == watchdog.armed:
                continue
            if watchdog.armed:
                self.alarms.clear(name, "watchdog_not_armed")
            elif self._online.get(name):
                self.alarms.raise_(name, "watchdog_not_armed", "warning",
                                   f"device {name}: its own watchdog ({watchdog.command} = "
                                   f"{watchdog.timeout_s:g} s) is not armed: {watchdog.problem}; "
                                   "if the service dies the device keeps its last command")
            else:
                self._armed.pop(name)  # offline: device_offline says it; judged when it is back

    def _note_latency(self) -> None:
        age = self.dispatch.note_latency(self.planning.solving)
        if age is not None:
            during = self.planning.solving
            (self.control_latency_during_solve_s if during else self.control_latency_s).append(age)

    def _save_state(self) -> None:
        save_state(self.store, self.clock.now(), self.state, self.sessions, self.controller.override,
                   self.controller.reserves)

    def _resume(self) -> None:
        """Billing-period peaks, tank levels, electrolyser state, EV sessions, the override, the
        reserves and the last plan from the store, when the service ran before."""
        override, reserves = resume_state(self.store, self.state, self.sessions)
        self.controller.override = override
        self.controller.reserves.update(reserves)
        self.tanks.level_kg.update(self.state.tank_kg)
        self.booking.resume_kpis(self.clock.now())
        stored = stored_plan(self.store)
        if stored is not None:
            self.planning.follow_stored(*stored)

    # -- operator's changes --------------------------------------------------------------------

    def set_reserve(self, battery: str, soc_min_fraction: float) -> None:
        """Keep at least this SOC in ``battery`` (e.g. backup reserve): the next plan, the rules,
        the limits and the guard all hold it."""
        self.controller.set_reserve(battery, soc_min_fraction)
        self._save_state()
        self.request_plan(f"reserve {battery} {soc_min_fraction:.0%}")

    def set_override(self, mode: Mode | None) -> None:
        self.controller.override = mode
        self._save_state()
        self.request_plan(f"override {mode or 'cleared'}")
