"""Wall time of a what-if run of guangdong_factory: 15 min steps, hourly re-planning.

    python bench/bench_whatif.py [--days 365] [--start 2025-01-01] [--workers N] [--json]

`--workers` is passed on only when WhatIfOptions has a `workers` field. Solves whose HiGHS
time exceeded the configured time limit are counted ("over limit").
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import date
from typing import Any

from _common import RESULTS, machine_info, over_limit

from ems.config import load_site
from ems.whatif.simulate import WhatIfOptions, simulate

SITE = "guangdong_factory"
TARGET_S = 300.0  # 365-day run
HAS_WORKERS = "workers" in WhatIfOptions.__dataclass_fields__


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--start", type=date.fromisoformat, default=date(2025, 1, 1))
    ap.add_argument("--workers", type=int, default=None,
                    help="parallel workers (only if WhatIfOptions supports them)")
    ap.add_argument("--json", action="store_true",
                    help="write bench/results/whatif_<days>d[_w<workers>].json")
    args = ap.parse_args()
    if args.workers is not None and not HAS_WORKERS:
        print("WhatIfOptions has no 'workers' field: running serially", file=sys.stderr)
    extra: dict[str, Any] = {"workers": args.workers} if HAS_WORKERS and args.workers else {}
    parallel = extra.get("workers", 1) > 1
    machine = machine_info()
    site = load_site(SITE)
    limit_s = site.config.planning.time_limit_s
    opts = WhatIfOptions(start=args.start, days=args.days, **extra)
    t0 = time.perf_counter()
    result = simulate(site, opts)
    wall = time.perf_counter() - t0
    summary = result.solver_summary()
    solve_s = sum(result.solve_wall_ms) / 1000
    highs_s = sum(result.solver_ms) / 1000
    p90 = (statistics.quantiles(result.solve_wall_ms, n=10)[-1]
           if len(result.solve_wall_ms) > 1 else 0.0)
    over = over_limit(result.solver_ms, limit_s)
    full_year_s = wall * 365 / args.days
    print(f"{SITE}: {args.days} days from {args.start}, workers "
          f"{extra.get('workers', 'n/a (serial)')}")
    print(f"wall time            {wall:9.1f} s  ({wall / args.days:.2f} s/day)")
    print(f"solves               {result.solves:9d}")
    print(f"median solve         {summary.get('median_solve_wall_ms', 0):9.1f} ms "
          f"(p90 {p90:.0f} ms, max {summary.get('max_solve_wall_ms', 0):.0f} ms; "
          f"HiGHS median {summary.get('median_highs_ms', 0):.1f} ms)")
    if parallel:
        print(f"time in solve()      {solve_s:9.1f} s  (HiGHS {highs_s:.1f} s), all workers")
    else:
        print(f"time in solve()      {solve_s:9.1f} s  (HiGHS {highs_s:.1f} s); rest of the loop "
              f"{wall - solve_s:.1f} s")
    print(f"LP fallbacks {result.lp_fallbacks}, plans with slacks {result.plans_with_slacks}, "
          f"model rebuilds {result.rebuilds}, HiGHS over the {limit_s:g} s limit {over}")
    if args.days != 365:
        print(f"365-day estimate     {full_year_s:9.1f} s  (linear extrapolation; target "
              f"{TARGET_S:.0f} s)")
    else:
        print(f"target {TARGET_S:.0f} s: {'met' if wall <= TARGET_S else 'NOT met'}")
    print("KPIs:")
    for k, v in result.kpis.items():
        print(f"  {k:30s} {v:14.2f}")
    if args.json:
        RESULTS.mkdir(exist_ok=True)
        tag = f"_w{extra['workers']}" if parallel else ""
        path = RESULTS / f"whatif_{args.days}d{tag}.json"
        payload = {
            "machine": machine, "site": SITE, "start": args.start.isoformat(), "days": args.days,
            "workers": extra.get("workers"), "has_workers_option": HAS_WORKERS,
            "wall_s": round(wall, 2), "solve_wall_s": round(solve_s, 2),
            "highs_s": round(highs_s, 2), "p90_solve_wall_ms": round(p90, 2),
            "solver": summary, "time_limit_s": limit_s, "over_limit": over,
            "extrapolated_365d_s": round(full_year_s, 1), "target_365d_s": TARGET_S,
            "kpis": result.kpis,
        }
        path.write_text(json.dumps(payload, indent=1))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
