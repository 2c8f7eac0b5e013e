"""Simulate a site over a period, serially or in parallel chunks, and compute its KPIs."""

from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd

from ems.config.loader import LoadedSite
from ems.whatif.closed_loop import RangeResult, simulate_range
from ems.whatif.kpi import compute_kpis
from ems.whatif.range_run import (
    ForecastKind,
    SimulationResult,
    Strategy,
    WhatIfOptions,
    max_sessions_per_horizon,
    period_utc,
)

__all__ = ["ForecastKind", "SimulationResult", "Strategy", "WhatIfOptions", "chunk_starts",
           "max_sessions_per_horizon", "period_utc", "simulate"]


def chunk_starts(site: LoadedSite, start: date, days: int, workers: int) -> list[date]:
    """First local day of each chunk: month starts near equal shares of the period (day
    boundaries when the period is shorter than the number of chunks in months)."""
    first = start
    last = start + timedelta(days=days)
    months = []
    d = date(first.year, first.month, 1)
    while d < last:
        if d > first:
            months.append(d)
        d = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    wanted = [first + timedelta(days=days * i / workers) for i in range(1, workers)]
    cuts = []
    for w in wanted:
        candidates = months if len(months) >= workers - 1 else [w]
        best = min(candidates, key=lambda m: abs((m - w).days))
        if best not in cuts and first < best < last:
            cuts.append(best)
    return [first, *sorted(cuts)]


def simulate(site: LoadedSite, opts: WhatIfOptions,
             progress: Callable[[int, int], None] | None = None) -> SimulationResult:
    """Simulate the period; KPIs come from the plant's per-step record.

    With `workers` > 1 the period is cut at local month starts into chunks simulated in
    parallel processes. Each chunk after the first starts `warmup_days` early from the
    configured initial state and its warm-up steps are discarded, so a chunk's plans and
    states have settled when its record begins; monthly demand charges stay exact because
    the cuts are at billing-period starts.
    """
    if opts.workers <= 1 or opts.days <= 2 * opts.warmup_days:
        start, end = period_utc(site, opts.start, opts.days)
        part = simulate_range(site, opts, start, start, end, progress)
        return _finish(site, [part], opts.strategy)
    firsts = chunk_starts(site, opts.start, opts.days, opts.workers)
    last = opts.start + timedelta(days=opts.days)
    jobs = []
    for i, first in enumerate(firsts):
        upto = firsts[i + 1] if i + 1 < len(firsts) else last
        keep_from, end = period_utc(site, first, (upto - first).days)
        warm = first - timedelta(days=opts.warmup_days) if i else first
        start, _ = period_utc(site, warm, 1)
        jobs.append((start, keep_from, end))
    total = sum(int((e - s).total_seconds()) for s, _, e in jobs)
    # spawn, not fork: a solver thread pool started in this process does not survive a fork
    context = mp.get_context("spawn")
    with context.Manager() as manager:
        queue = manager.Queue()
        with ProcessPoolExecutor(max_workers=opts.workers, mp_context=context) as pool:
            futures = [pool.submit(_chunk_worker, site, opts, s, k, e, queue, i)
                       for i, (s, k, e) in enumerate(jobs)]
            done: dict[int, int] = {}
            while not all(f.done() for f in futures):
                try:
                    i, seconds = queue.get(timeout=0.2)
                    done[i] = seconds
                    if progress is not None:
                        progress(sum(done.values()), total)
                except queue_mod.Empty:
                    pass
            parts = [f.result() for f in futures]
    if progress is not None:
        progress(total, total)
    return _finish(site, parts, opts.strategy)


def _chunk_worker(site: LoadedSite, opts: WhatIfOptions, start: datetime, keep_from: datetime,
                  end: datetime, queue: Any, index: int) -> RangeResult:
    step_s = site.config.planning.step_minutes * 60

    def report(done: int, total: int) -> None:
        if done % 96 == 0 or done == total:
            queue.put((index, done * step_s))

    return simulate_range(site, opts, start, keep_from, end, report)


def _finish(site: LoadedSite, parts: list[RangeResult], strategy: str) -> SimulationResult:
    cfg = site.config
    steps = pd.concat([p.result.steps for p in parts])
    out = SimulationResult(strategy=strategy, steps=steps, kpis={})
    for p in parts:
        r = p.result
        out.solves += r.solves
        out.solve_wall_ms += r.solve_wall_ms
        out.solver_ms += r.solver_ms
        out.lp_fallbacks += r.lp_fallbacks
        out.plans_with_slacks += r.plans_with_slacks
        out.rebuilds += r.rebuilds
    out.kpis = compute_kpis(
        steps, cfg, sum(p.ev_delivered_kwh for p in parts), sum(p.ev_shortfall_kwh for p in parts),
        battery_throughput_kwh=float(steps["battery_throughput_kwh"].sum()),
        electrolyser_starts=int(steps["electrolyser_starts"].sum()),
    )
    return out
