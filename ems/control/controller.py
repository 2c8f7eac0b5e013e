"""The controller: one decision per control cycle, for the live service and the what-if alike.

:meth:`Controller.step` takes a :class:`~ems.control.observe.Snapshot` (what the devices report),
the current plan and the grid's terms in force, and returns a :class:`Decision`. It does no I/O
and has no clock of its own. In this order it

1. follows the plan's slot targets (mode "auto"), or the rule set (mode "fallback": the
   service's fallback and the what-if's baseline);
2. takes the forecast error from the measured grid exchange (auto);
3. brings every value within what its device can do now (rating, SOC room above the floor or the
   operator's reserve, charger and electrolyser ranges);
4. holds the import and export limits, predicted from the meter with those feasible values;
5. hands the result to the safety guard, last and independent of the plan.

Mode "pause" (an operator's override) puts every device in its safe state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from drivers.setpoints import Setpoints
from ems.config.models import SiteConfig
from ems.control.limits import battery_room, hold_grid_limits, within_devices
from ems.control.observe import Observed, Snapshot, observe
from ems.control.safety import DEFAULT_STALENESS_S, EvFallback, GuardResult, SafetyGuard, safe_state
from ems.control.targets import Wanted, absorb_forecast_error, plan_targets, rule_targets
from optimizer import Plan

Mode = Literal["auto", "fallback", "pause"]
PLAN_OK = ("optimal", "feasible", "relaxed")
"""Plan statuses the controller follows."""


@dataclass(frozen=True)
class Slot:
    """The grid's terms in force now: import and export limits (kW) and, per configured demand
    charge, whether it counts this step and its billing-period peak so far (kW)."""

    import_limit_kw: float
    export_limit_kw: float
    demand_counted: tuple[bool, ...] = ()
    demand_peaks_kw: tuple[float, ...] = ()


@dataclass(frozen=True)
class PlanInput:
    """The plan to follow (None: none yet), why the last planning attempt failed (None: it did
    not), which session is on which charger (the plan's EV targets are per session) and when
    each leaves."""

    plan: Plan | None
    failed: str | None = None
    session_on_charger: Mapping[str, str] = field(default_factory=dict)
    departure_utc: Mapping[str, datetime] = field(default_factory=dict)
    """Charger -> when its vehicle leaves (as the plan assumed it)."""


@dataclass(frozen=True)
class ControllerSettings:
    """``period_s``: seconds between cycles (SOC room is counted over one period);
    ``plan_import_margin_fraction``: how far under the import limit plans keep the grid;
    ``staleness_s``: the guard's limit on a reading's age; ``electrolyser_min_kw``: the least each
    electrolyser device runs at (kW, from its profile); ``electrolyser_rule_kw``: the rule set's
    level per electrolyser (kW)."""

    period_s: float = 2.0
    plan_import_margin_fraction: float = 0.0
    staleness_s: float = DEFAULT_STALENESS_S
    electrolyser_min_kw: Mapping[str, float] = field(default_factory=dict)
    electrolyser_rule_kw: Mapping[str, float] = field(default_factory=dict)
    ev_fallback: EvFallback = "min_current"
    plan_steps_valid: int = 2
    """A plan is followed until it is this many plan steps old (re-plans come before that)."""
    previous_plan_valid_h: float = 2.0
    """After a failed plan, the previous one is followed up to this many hours from its start."""


@dataclass(frozen=True)
class Decision:
    """One cycle's outcome: the setpoints to write (after the guard), what the controller wanted
    with the reasons that bound each value, the guard's result, the mode and the limits."""

    time_utc: datetime
    mode: Mode
    mode_reason: str
    plan_step: int | None
    wanted: Wanted
    guard: GuardResult
    import_limit_kw: float
    export_limit_kw: float
    observed: Observed

    @property
    def setpoints(self) -> Setpoints:
        return self.guard.setpoints

    def reasons(self, asset: str) -> list[str]:
        """Every limit that bound ``asset``'s value this cycle (controller, then guard)."""
        return [*self.wanted.bound_by.get(asset, []),
                *(f"guard: {why}" for why in self.guard.bound_by.get(asset, []))]


class Controller:
    """Decides setpoints each cycle; keeps only what a controller must remember: the operator's
    reserves and override, the guard's active alarms and what it told each device last."""

    def __init__(self, cfg: SiteConfig, settings: ControllerSettings | None = None) -> None:
        self.cfg = cfg
        self.settings = settings or ControllerSettings()
        self.guard = SafetyGuard(cfg, staleness_s=self.settings.staleness_s,
                                 ev_fallback=self.settings.ev_fallback)
        self.reserves: dict[str, float] = self.guard.reserves
        """Battery -> SOC floor (fraction) set by the operator; every step holds it."""
        self.override: Mode | None = None
        self.last: Setpoints | None = None
        """The setpoints of the previous cycle."""
        self._ev_step: datetime | None = None
        self._ev_kwh: dict[str, float] = {}

    def set_reserve(self, battery: str, soc_min_fraction: float) -> None:
        if battery not in {b.name for b in self.cfg.battery}:
            raise KeyError(f"battery: no such battery {battery!r}")
        if not (math.isfinite(soc_min_fraction) and 0.0 <= soc_min_fraction < 1.0):
            raise ValueError(f"soc_min_fraction must be in [0, 1), got {soc_min_fraction!r}")
        self.reserves[battery] = soc_min_fraction

    def floors(self) -> dict[str, float]:
        """Per battery, the SOC floor in force (fraction): the config's or the reserve."""
        return {b.name: max(b.soc_min_fraction, self.reserves.get(b.name, 0.0)) for b in self.cfg.battery}

    def mode(self, plan: PlanInput, now: datetime) -> tuple[Mode, str, int | None]:
        """The mode, why, and the plan step holding ``now`` (None outside auto)."""
        if self.override is not None:
            return self.override, "override", None
        failed = f"planning failed: {plan.failed}; " if plan.failed is not None else ""
        p = plan.plan
        if p is None:
            return "fallback", f"{failed}no plan", None
        age = now - p.instants_utc[0]
        valid = timedelta(minutes=self.settings.plan_steps_valid * p.step_minutes)
        if plan.failed is not None:
            valid = max(valid, timedelta(hours=self.settings.previous_plan_valid_h))
        if age > valid:
            return "fallback", f"{failed}plan is {age.total_seconds() / 60:.0f} min old", None
        if p.solver.status not in PLAN_OK:
            return "fallback", f"{failed}plan status {p.solver.status}", None
        k = int(age.total_seconds() // (p.step_minutes * 60))
        if not 0 <= k < len(p.instants_utc):
            return "fallback", f"{failed}the plan does not cover now", None
        if plan.failed is not None:
            return "auto", f"{failed}following the previous plan", k
        return "auto", "following the plan", k

    def step(self, snap: Snapshot, plan: PlanInput, slot: Slot) -> Decision:
        cfg, settings = self.cfg, self.settings
        mode, reason, k = self.mode(plan, snap.time_utc)
        obs = observe(cfg, snap, self.last)
        if mode == "pause":
            safe = safe_state(cfg, settings.ev_fallback)
            self.last = safe
            paused = GuardResult(safe, [], {}, frozenset())
            return Decision(snap.time_utc, mode, reason, None, Wanted(), paused,
                            slot.import_limit_kw, slot.export_limit_kw, obs)
        room = battery_room(cfg, obs, self.floors(), settings.period_s / 3600.0)
        self._count_ev_energy(snap.time_utc, obs, plan.plan, k)
        if mode == "auto" and plan.plan is not None and k is not None:
            wanted = plan_targets(plan.plan, k, cfg, plan.session_on_charger)
            self._ev_slot_energy(wanted, plan, k, snap.time_utc)
            # the error is counted on values the devices can take (e.g. an electrolyser's own
            # minimum load above the plan's), then the batteries' share is brought within room
            within_devices(wanted, cfg, obs, room, settings.electrolyser_min_kw)
            ceiling = self.import_ceiling(plan.plan, k, slot, obs)
            absorb_forecast_error(wanted, plan.plan, k, cfg, obs, ceiling)
        else:
            running = {e.name: (self.last.electrolyser_kw.get(e.name, 0.0) if self.last else 0.0) > 0
                       for e in cfg.electrolyser}
            wanted = rule_targets(cfg, obs, settings.electrolyser_rule_kw, running)
        within_devices(wanted, cfg, obs, room, settings.electrolyser_min_kw)
        hold_grid_limits(wanted, cfg, obs, room, slot.import_limit_kw, slot.export_limit_kw,
                         settings.electrolyser_min_kw)
        result = self.guard.check(wanted, snap.readings, snap.reading_time_utc)
        self.last = result.setpoints
        return Decision(snap.time_utc, mode, reason, k, wanted, result, slot.import_limit_kw,
                        slot.export_limit_kw, obs)

    def _count_ev_energy(self, now: datetime, obs: Observed, plan: Plan | None, k: int | None) -> None:
        """Energy each charger delivered since the start of the plan step holding ``now`` (kWh),
        from its power readings (each counted over the period before it)."""
        if plan is None or k is None:
            self._ev_kwh.clear()
            return
        start = plan.instants_utc[k]
        if self._ev_step != start:
            self._ev_step = start
            self._ev_kwh.clear()
            return
        period_h = self.settings.period_s / 3600.0
        for name, kw in obs.ev_now_kw.items():
            if kw is not None:
                self._ev_kwh[name] = self._ev_kwh.get(name, 0.0) + max(0.0, kw) * period_h

    def _ev_slot_energy(self, w: Wanted, plan_in: PlanInput, k: int, now: datetime) -> None:
        """A plan's EV power is a step average: the step's energy is delivered in what is left of
        the step while the vehicle is there (a van plugged in mid-step gets its planned energy,
        not a fraction of it; one leaving mid-step gets it before it leaves)."""
        plan = plan_in.plan
        assert plan is not None
        step_h = plan.step_minutes / 60.0
        step_end = plan.instants_utc[k] + timedelta(minutes=plan.step_minutes)
        for c in self.cfg.ev_charger:
            kw = w.ev_kw.get(c.name, 0.0)
            if kw <= 0:
                continue
            leaves = plan_in.departure_utc.get(c.name)
            end = step_end if leaves is None else min(step_end, leaves)
            left_h = max((end - now).total_seconds() / 3600.0, self.settings.period_s / 3600.0)
            rest = max(0.0, kw * step_h - self._ev_kwh.get(c.name, 0.0))
            # below the charger's minimum it would pause: the energy then comes at the minimum
            # power, early in the step, and stops when it is delivered
            want = rest / left_h
            w.ev_kw[c.name] = 0.0 if rest <= 0 else min(c.max_power_kw, max(want, c.min_power_kw))

    def import_ceiling(self, plan: Plan, k: int, slot: Slot, obs: Observed) -> float:
        """Import the grid may take beyond the plan before the batteries cover forecast error
        (kW): the import limit, unless a demand charge counts the step, the plan is below its
        (margined) import limit and the batteries hold more energy than the plan expects now;
        then the billing period's peak so far (or the plan's own import, when higher), since more
        would raise the charge. Energy the plan counts on is kept for what it was planned for."""
        limit = slot.import_limit_kw
        if not any(slot.demand_counted):
            return limit
        planned = float(plan.series["grid.import_kw"][k])
        if planned >= limit * (1.0 - self.settings.plan_import_margin_fraction) - 1.0:
            return limit  # the plan is at its limit: the margin it kept is for forecast error
        stored = obs.stored_kwh(self.cfg)
        if stored is None or stored <= expected_stored_kwh(plan, k, self.cfg) + 1.0:
            return limit
        ceiling = limit
        for counted, peak in zip(slot.demand_counted, slot.demand_peaks_kw, strict=False):
            if counted:
                ceiling = min(ceiling, max(planned, peak))
        return ceiling


def expected_stored_kwh(plan: Plan, k: int, cfg: SiteConfig) -> float:
    """Energy the plan expects in the batteries at the start of step ``k`` (kWh)."""
    total = 0.0
    step_h = plan.step_minutes / 60.0
    s = plan.series
    for b in cfg.battery:
        soc = s.get(f"{b.name}.soc_kwh")
        if not soc:
            continue
        if k > 0:
            total += float(soc[k - 1])
            continue
        charge, discharge = float(s[f"{b.name}.charge_kw"][0]), float(s[f"{b.name}.discharge_kw"][0])
        total += (float(soc[0]) - charge * b.charge_efficiency * step_h
                  + discharge * step_h / b.discharge_efficiency)
    return total
