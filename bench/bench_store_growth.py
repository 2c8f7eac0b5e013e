"""Store size over months of running, with the retention of `ems.store.rollup`.

Runs the service (stepped site clock, the reference site's simulators, SQLite) for ``--hours`` of
site time to take the real rows a running service writes: telemetry per cycle and plans with
their bodies. Then replays those rows, shifted day by day, into a fresh store for ``--days``
days, running the service's retention job at the end of each day, and reports the live bytes
of the store (SQLite pages in use; freed pages are reused, not returned to the file system):
after the raw window fills, the growth per day is the aggregates' and the thinned plans'.

    .venv/bin/python bench/bench_store_growth.py --hours 2 --days 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sqlite3
import sys
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ems.cli.run_cmd import run_service  # noqa: E402
from ems.config import load_site  # noqa: E402
from ems.runtime.booking import Booking  # noqa: E402
from ems.store import SetpointWrite, Store, TelemetryRow  # noqa: E402

START = datetime(2025, 7, 15, 0, 0, tzinfo=UTC)


def live_bytes(path: Path) -> int:
    with sqlite3.connect(path) as con:
        page = con.execute("PRAGMA page_size").fetchone()[0]
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        free = con.execute("PRAGMA freelist_count").fetchone()[0]
    return int((pages - free) * page)


def sample_rows(hours: float) -> tuple[list[TelemetryRow], list[dict[str, Any]], list[SetpointWrite]]:
    """The telemetry rows, plans and setpoint writes of a stepped service run of ``hours`` site
    hours."""
    site = load_site("guangdong_factory")
    path = Path(tempfile.mkdtemp()) / "sample.sqlite"
    store = Store.at_path(path)
    asyncio.run(run_service(site, store, True, 60.0, START, hours * 3600.0, stepped=True))
    end = START + timedelta(hours=hours)
    frame = store.telemetry(START, end + timedelta(days=1))
    rows = [TelemetryRow(r.ts, r.device, r.point, None if r.value != r.value else r.value, r.missing_reason)
            for r in frame.itertuples()]
    with store.engine.connect() as c:
        from sqlalchemy import select

        from ems.store import schema
        plans = [dict(r._mapping) for r in c.execute(select(schema.plans)).all()]
        writes = [SetpointWrite(**{k: v for k, v in r._mapping.items() if k != "id"})
                  for r in c.execute(select(schema.setpoint_writes)).all()]
    store.close()
    return rows, plans, writes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0, help="Site hours of the sampled run")
    parser.add_argument("--days", type=int, default=30, help="Days replayed")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "store_growth.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    rows, plans, writes = sample_rows(args.hours)
    per_day = 24.0 / args.hours
    site = load_site("guangdong_factory")
    path = Path(tempfile.mkdtemp()) / "ems.sqlite"
    store = Store.at_path(path)
    clock = {"now": START}
    booking = Booking(site.config, store, None, None, None, lambda: clock["now"])  # type: ignore[arg-type]
    sizes = []
    for day in range(args.days):
        for rep in range(round(per_day)):
            shift = timedelta(days=day, hours=rep * args.hours)
            store.add_telemetry(TelemetryRow(r.ts + shift, r.device, r.point, r.value, r.missing_reason)
                                for r in rows)
            for p in plans:
                store.add_plan(p["created_at"] + shift, p["slot_start"] + shift, p["step_minutes"],
                               p["status"], p["headline"], p["body"], p["total_cost"], p["emissions_kg"],
                               p["solve_s"])
            for w in writes:
                store.add_setpoint(replace(w, ts=w.ts + shift,
                                           slot_start=None if w.slot_start is None else w.slot_start + shift))
        clock["now"] = START + timedelta(days=day + 1)
        booking.purge()
        sizes.append(live_bytes(path))
    rows_per_day = len(rows) * per_day
    plans_per_day = len(plans) * per_day
    late = sizes[-1] - sizes[-8] if len(sizes) >= 15 else None
    result = {
        "command": f"python bench/bench_store_growth.py --hours {args.hours:g} --days {args.days}",
        "sampled_site_hours": args.hours, "telemetry_rows_per_day": rows_per_day,
        "plans_per_day": plans_per_day, "setpoint_writes_per_day": len(writes) * per_day,
        "plan_body_bytes_mean": sum(len(json.dumps(p["body"])) for p in plans) / max(1, len(plans)),
        "live_mb_by_day": [round(b / 1e6, 2) for b in sizes],
        "growth_mb_per_day_after_raw_window": None if late is None else round(late / 7 / 1e6, 3),
        "file_mb": round(path.stat().st_size / 1e6, 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
