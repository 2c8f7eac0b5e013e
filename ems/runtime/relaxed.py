"""Limits that did not hold, made visible: the soft limits a plan had to relax (its slacks, with
their penalties kept apart from the money the plan spends), and the grid meter above an import
or export limit.

Alarms: ``relaxed_<limit>`` on the asset while the latest plan relaxes that limit (cleared by the
first plan that does not); ``import_limit_exceeded`` / ``export_limit_exceeded`` on the grid once
the meter has been beyond the limit for more than one dispatch cycle (cleared by a cycle within it).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from ems.runtime.alarms import Alarms
from optimizer import Plan

PENALTY_PREFIX = "penalty_"

WHAT_IT_MEANS = {
    "import_limit": "the plan imports above the import limit",
    "export_limit": "the plan exports above the export limit",
    "ev_energy": "a vehicle gets less than its need by departure",
    "tank_floor": "a hydrogen tank goes below its floor",
    "tank_capacity_vent": "a hydrogen tank vents",
    "hydrogen_demand": "hydrogen offtake is not met",
    "soc_min": "a battery goes below its SOC floor or reserve",
    "soc_max": "a battery goes above its SOC ceiling",
    "initial_soc_outside_capacity": "the measured SOC lies outside the battery's capacity",
}
"""What relaxing each limit means for the operator (limit names as the optimiser reports them)."""

GRID_TOLERANCE_KW = 1.0
GRID_TOLERANCE_FRACTION = 0.01
"""The meter is beyond a limit when it exceeds it by more than the larger of these (kW; share)."""


def penalty_cost(plan: Plan) -> float:
    """Money-equivalent of the relaxed limits (not money spent), in the site's currency."""
    return sum(v for k, v in plan.costs.items() if k.startswith(PENALTY_PREFIX))


def operating_cost(plan: Plan) -> float:
    """What the plan spends (energy, demand charge, carbon, wear, start-ups): its total cost
    without penalties, in the site's currency."""
    return plan.total_cost - penalty_cost(plan)


def plan_slacks(plan: Plan) -> list[dict[str, Any]]:
    """Each relaxed limit of ``plan``: limit, asset, amount and unit over the horizon, the UTC
    start of the first step that relaxes it, its penalty and what it means."""
    n = len(plan.instants_utc)
    out = []
    for slack in plan.slacks:
        start: datetime | None = plan.instants_utc[min(slack.first_step, n - 1)] if n else None
        out.append({**asdict(slack), "amount": round(slack.amount, 3),
                    "penalty_cost": round(slack.penalty_cost, 2),
                    "start_utc": start.isoformat() if start is not None else None,
                    "meaning": WHAT_IT_MEANS.get(slack.limit, slack.limit)})
    return out


def slack_text(slacks: list[dict[str, Any]]) -> str:
    """One line: "import_limit of grid 18717.0 kWh from 2025-07-15T10:30:00+00:00; ..."."""
    return "; ".join(f"{s['limit']} of {s['asset']} {s['amount']:g} {s['unit']} from {s['start_utc']}"
                     for s in slacks)


def _device(asset: str) -> str:
    """The asset an alarm is raised on: an EV session ("fleet_1@2025-07-15T10:30:12Z") is its
    charger's."""
    return asset.split("@", 1)[0]


class RelaxedLimits:
    """Keeps one alarm per relaxed (asset, limit) of the latest plan."""

    def __init__(self, alarms: Alarms) -> None:
        self.alarms = alarms
        self.raised: set[tuple[str, str]] = set()

    def update(self, slacks: list[dict[str, Any]], currency: str) -> None:
        now_relaxed = {(_device(s["asset"]), s["limit"]) for s in slacks}
        for s in slacks:
            self.alarms.raise_(
                _device(s["asset"]), f"relaxed_{s['limit']}", "warning",
                f"the plan relaxes {s['limit']} of {s['asset']}: {s['meaning']} "
                f"({s['amount']:g} {s['unit']} over the horizon from {s['start_utc']}; "
                f"penalty {s['penalty_cost']:g} {currency}, not money spent)")
        for asset, limit in self.raised - now_relaxed:
            self.alarms.clear(asset, f"relaxed_{limit}")
        self.raised = now_relaxed


class GridLimitWatch:
    """Raises an alarm when the metered grid power stays beyond the import or export limit for
    more than one dispatch cycle. Powers in kW, > 0 import."""

    def __init__(self, alarms: Alarms, device: str = "grid") -> None:
        self.alarms = alarms
        self.device = device
        self.cycles_over: dict[str, int] = {"import": 0, "export": 0}

    def update(self, grid_net_kw: float | None, import_limit_kw: float, export_limit_kw: float) -> None:
        if grid_net_kw is None:
            return  # no reading: nothing judged (device_offline says so)
        for side, flow_kw, limit_kw in (("import", grid_net_kw, import_limit_kw),
                                        ("export", -grid_net_kw, export_limit_kw)):
            over = flow_kw > limit_kw + max(GRID_TOLERANCE_KW, GRID_TOLERANCE_FRACTION * limit_kw)
            code = f"{side}_limit_exceeded"
            if not over:
                if self.cycles_over[side] > 1:
                    self.alarms.clear(self.device, code)
                self.cycles_over[side] = 0
                continue
            self.cycles_over[side] += 1
            if self.cycles_over[side] == 2:
                self.alarms.raise_(self.device, code, "critical",
                                   f"the meter reads {flow_kw:.1f} kW of {side} against a limit of "
                                   f"{limit_kw:g} kW for more than one dispatch cycle")
