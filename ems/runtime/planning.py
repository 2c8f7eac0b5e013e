"""The service's slow loop: one plan per slot and per event, through the one planning pipeline
(:mod:`ems.planning.pipeline`), solved in a worker thread so polling and dispatch go on.

A plan asked for while one is being solved is not queued: events during a solve coalesce into
one re-plan after it; a slot's plan during a solve is skipped (``plans_skipped``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ems.config.loader import LoadedSite
from ems.control.estimate import StateEstimator
from ems.inputs.site_inputs import SiteInputs, build_inputs
from ems.planning.pipeline import make_problem
from ems.planning.problem_builder import floor_to_step, horizon_steps, settings_from
from ems.runtime.alarms import Alarms
from ems.runtime.forecasts import RuntimeForecaster
from ems.runtime.metrics import ServiceMetrics
from ems.runtime.relaxed import RelaxedLimits, operating_cost, penalty_cost, plan_slacks, slack_text
from ems.runtime.sessions import SessionTracker
from ems.store import Store
from optimizer import Plan, RollingPlanner

log = logging.getLogger("ems.service")


@dataclass
class PlanStatus:
    plan_id: int | None = None
    plan_slot: datetime | None = None
    plan_status: str | None = None
    plans_done: int = 0
    plans_failed: int = 0
    plans_skipped: int = 0
    last_plan_failed: str | None = None
    """Why the last planning attempt failed (None when it succeeded)."""
    last_solve_s: float | None = None
    reasons: list[str] = field(default_factory=list)
    cost: float | None = None
    """The latest plan's cost without penalties (site currency)."""
    penalty_cost: float = 0.0
    """The latest plan's penalties for relaxed limits (not money spent)."""
    slacks: list[dict[str, Any]] = field(default_factory=list)
    """The limits the latest plan relaxes (see :func:`ems.runtime.relaxed.plan_slacks`)."""


class Planning:
    """Makes the site's plans; ``plan`` and ``inputs`` are the latest good ones."""

    def __init__(self, site: LoadedSite, store: Store, now: Callable[[], datetime],
                 sessions: SessionTracker, estimator: StateEstimator, reserves: Mapping[str, float],
                 alarms: Alarms, metrics: ServiceMetrics, forecaster: RuntimeForecaster | None) -> None:
        self.site = site
        self.cfg = site.config
        self.store = store
        self.now = now
        self.sessions = sessions
        self.estimator = estimator
        self.reserves = reserves
        self.alarms = alarms
        self.metrics = metrics
        self.forecaster = forecaster
        self.status = PlanStatus()
        self.relaxed = RelaxedLimits(alarms)
        self.planner = RollingPlanner()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="solve")
        self.plan: Plan | None = None
        self.inputs: SiteInputs | None = None
        self.solving = False
        self._pending: str | None = None
        self.step_minutes = self.cfg.planning.step_minutes
        self.on_plan: list[Callable[[Plan, SiteInputs], None]] = []
        """Called with each new plan and its inputs."""

    async def run(self, reason: str = "slot") -> None:
        """Plan now (skipped while a solve runs; events then coalesce into one re-plan after it)."""
        if self.solving:
            self.status.plans_skipped += 1
            if reason != "slot":
                self._pending = reason
            log.info("plan skipped (%s): a solve is still running", reason)
            return
        self.solving = True
        try:
            await self._plan(reason)
            while self._pending is not None:
                reason, self._pending = f"{self._pending} (after the running solve)", None
                await self._plan(reason)
        finally:
            self.solving = False

    async def _plan(self, reason: str) -> None:
        cfg = self.cfg
        now = self.now()
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
            state = self.estimator.for_plan(now, self.step_minutes)
            state.ev_delivered_kwh = {s.session_id: s.delivered_kwh for s in self.sessions.active.values()}
            built = time.perf_counter()
            problem = make_problem(self.site, inputs, slot, state, settings_from(cfg), self.reserves)
            self.metrics.plan_build_s.observe(time.perf_counter() - built)
            started = loop.time()
            plan = await loop.run_in_executor(self.executor, self.planner.solve, problem)
            solve_s = loop.time() - started
            self.metrics.solve_s.observe(solve_s)
        except Exception as exc:  # a failed plan must not stop the service: fall back
            self.status.plans_failed += 1
            self.status.last_plan_failed = f"{type(exc).__name__}: {exc}"
            self.alarms.raise_("planner", "planning_failed", "warning",
                               f"planning at {slot.isoformat()} failed: {exc}")
            log.error("plan %s failed: %s", reason, exc, extra={
                "event": "plan_failed", "slot_start": slot.isoformat(), "reason": reason,
                "error": self.status.last_plan_failed})
            self.store.add_plan(self.now(), slot, self.step_minutes, "failed", str(exc), {})
            return
        self.alarms.clear("planner", "planning_failed")
        self.status.last_plan_failed = None
        self.plan, self.inputs = plan, inputs
        self._record(plan, inputs, slot, reason, solve_s, n)
        for callback in self.on_plan:
            callback(plan, inputs)

    def _record(self, plan: Plan, inputs: SiteInputs, slot: datetime, reason: str, solve_s: float,
                n: int) -> None:
        cfg = self.cfg
        cost, penalties, slacks = operating_cost(plan), penalty_cost(plan), plan_slacks(plan)
        headline = (f"plan {slot.isoformat()} ({reason}): cost {cost:.2f} {cfg.site.currency}, "
                    f"emissions {plan.emissions_kg:.1f} kg, {plan.solver.status} in {solve_s:.2f} s"
                    + (f", binding {', '.join(sorted(plan.binding))}" if plan.binding else "")
                    + (f"; RELAXED: {slack_text(slacks)} (penalties {penalties:.2f} {cfg.site.currency}, "
                       "not in the cost)" if slacks else ""))
        body = {"instants_utc": [t.isoformat() for t in plan.instants_utc],
                "series": {k: [float(x) for x in v] for k, v in plan.series.items()
                           if k.startswith(("grid.", "ev:")) or k.endswith(("_kw", "_kg", ".on", "_kwh"))},
                "import_price_per_kwh": inputs.frame["import_price_per_kwh"].tolist()[:n],
                "carbon_g_per_kwh": inputs.frame["carbon_g_per_kwh"].tolist()[:n],
                "costs": {k: round(v, 4) for k, v in plan.costs.items()},
                "penalty_cost": round(penalties, 4), "slacks": slacks}
        st = self.status
        st.plan_id = self.store.add_plan(self.now(), slot, self.step_minutes, plan.solver.status, headline,
                                         body, cost, plan.emissions_kg, solve_s)
        st.plan_slot, st.plan_status = slot, plan.solver.status
        st.plans_done += 1
        st.last_solve_s = solve_s
        st.slacks, st.penalty_cost, st.cost = slacks, penalties, cost
        (log.warning if slacks else log.info)(headline, extra={
            "event": "plan", "plan_id": st.plan_id, "slot_start": slot.isoformat(),
            "reason": reason, "status": plan.solver.status, "cost": round(cost, 2),
            "penalty_cost": round(penalties, 2), "slacks": slacks,
            "currency": cfg.site.currency, "emissions_kg": round(plan.emissions_kg, 1),
            "binding": sorted(plan.binding), "solve_s": round(solve_s, 3)})
        self.relaxed.update(slacks, cfg.site.currency)

    def follow_stored(self, plan: Plan, plan_id: int, slot: datetime, status: str) -> None:
        """Follow a stored plan until the first new one is ready (after a restart)."""
        self.plan = plan
        self.status.plan_id, self.status.plan_slot, self.status.plan_status = plan_id, slot, status

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
