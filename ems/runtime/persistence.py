"""What the service keeps across a restart, in the store's runtime state: billing-period peaks,
tank estimates, electrolyser on/off, EV sessions, the operator's override and reserves, and the
last plan (followed until the first new plan is ready)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from ems.planning.state import SiteState
from ems.runtime.sessions import SessionTracker
from ems.store import Store
from optimizer import Plan
from optimizer.plan import SolverReport

log = logging.getLogger("ems.service")

PLAN_OK = ("optimal", "feasible", "relaxed")


def save_state(store: Store, now: datetime, state: SiteState, sessions: SessionTracker,
               override: str | None, reserves: dict[str, float]) -> None:
    store.put_state("billing", {"period": state.billing_period, "peak_import_kw": state.peak_import_kw,
                                "demand_peaks_kw": state.demand_peaks_kw}, now)
    store.put_state("tank_kg", state.tank_kg, now)
    store.put_state("electrolyser_on", state.electrolyser_on, now)
    store.put_state("ev_sessions", sessions.to_json(), now)
    store.put_state("override", override, now)
    store.put_state("reserves", reserves, now)


def resume_state(store: Store, state: SiteState, sessions: SessionTracker) -> tuple[Any, dict[str, float]]:
    """Read the saved state into ``state`` and ``sessions``; returns (override, reserves)."""
    billing = store.get_state("billing")
    if billing:
        state.billing_period = billing["period"]
        state.peak_import_kw = float(billing["peak_import_kw"])
        state.demand_peaks_kw = {int(k): float(v) for k, v in (billing.get("demand_peaks_kw") or {}).items()}
    state.tank_kg.update(store.get_state("tank_kg", {}) or {})
    state.electrolyser_on.update(store.get_state("electrolyser_on", {}) or {})
    sessions.restore(store.get_state("ev_sessions", []) or [])
    reserves = {str(k): float(v) for k, v in (store.get_state("reserves", {}) or {}).items()}
    return store.get_state("override"), reserves


def stored_plan(store: Store) -> tuple[Plan, int, datetime, str] | None:
    """The last stored plan that can be followed: (plan, id, slot start, status), or None."""
    latest = store.latest_plan()
    if not latest or latest["status"] not in PLAN_OK:
        return None
    body = latest["body"]
    try:
        plan = Plan(instants_utc=[datetime.fromisoformat(t) for t in body["instants_utc"]],
                    step_minutes=int(latest["step_minutes"]), series=dict(body["series"]),
                    costs={"stored": float(latest["total_cost"] or 0.0)},
                    emissions_kg=float(latest["emissions_kg"] or 0.0), slacks=[],
                    solver=SolverReport(latest["status"], "stored", 0.0, 0.0, None, False, 0))
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("the last stored plan cannot be resumed: %s", exc)
        return None
    return plan, int(latest["id"]), latest["slot_start"], str(latest["status"])
