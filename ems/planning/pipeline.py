"""The one planning pipeline: site inputs and state → Problem (with the plan margin and the
operator's reserves) → solve → Plan. Used by `ems plan`, the service and the what-if, so all
three plan the same way."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime

import pandas as pd

from ems.config.loader import LoadedSite
from ems.inputs.site_inputs import SiteInputs
from ems.planning.problem_builder import PlanSettings, build_problem, horizon_steps
from ems.planning.state import SiteState
from ems.site.commands import electrolyser_minimums
from optimizer import Plan, Problem, RollingPlanner


def with_margin(frame: pd.DataFrame, margin_fraction: float) -> pd.DataFrame:
    """``frame`` with its import limit less ``margin_fraction`` (headroom for forecast error,
    which the controller covers from the meter; it holds the full limit)."""
    if margin_fraction <= 0:
        return frame
    out = frame.copy()
    out["import_limit_kw"] = out["import_limit_kw"] * (1.0 - margin_fraction)
    return out


def make_problem(site: LoadedSite, inputs: SiteInputs, at_utc: datetime, state: SiteState,
                 settings: PlanSettings, reserves: Mapping[str, float] | None = None,
                 window: pd.DataFrame | None = None, margin_fraction: float | None = None) -> Problem:
    """The Problem for the horizon from ``at_utc``: the inputs' rows (or ``window``), the import
    limit less the plan margin (``margin_fraction``; default the config's
    ``service.plan_import_margin_fraction``), each electrolyser's minimum load raised to its
    device's own, and each battery's SOC floor raised to its reserve (``reserves``: battery →
    SOC fraction)."""
    margin = site.config.service.plan_import_margin_fraction if margin_fraction is None else margin_fraction
    rows = window if window is not None else inputs.window(pd.Timestamp(at_utc), horizon_steps(site.config))
    problem = build_problem(site, inputs, at_utc, state, settings, window=with_margin(rows, margin))
    minimum = electrolyser_minimums(site.config)
    if minimum:
        # plan what the device can do: an electrolyser runs at its own minimum (Enapter 60 %)
        problem = dataclasses.replace(problem, electrolysers=[
            dataclasses.replace(e, min_load_fraction=max(e.min_load_fraction,
                                                         minimum.get(e.name, 0.0) / e.rated_kw))
            for e in problem.electrolysers])
    if reserves:
        problem = dataclasses.replace(problem, batteries=[
            dataclasses.replace(b, soc_min_fraction=max(b.soc_min_fraction, reserves.get(b.name, 0.0)))
            for b in problem.batteries])
    return problem


def solve(planner: RollingPlanner, problem: Problem) -> Plan:
    """Solve on the site's persistent planner (built once per site structure, re-solved with new
    data)."""
    return planner.solve(problem)

