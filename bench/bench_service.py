"""Site service benchmark: control latency and memory on the reference site's simulators.

Runs `ems run guangdong_factory --simulate` in-process at ``--speed`` for ``--hours`` of site
time and reports:
- control latency: wall time from the meter reading a dispatch cycle acted on to each setpoint
  write acknowledged by the device (Modbus TCP on loopback), p50 and p99, in cycles while no
  plan is being solved (the solve's thread shares the interpreter); the cycles during solves are
  reported apart;
- RSS of the service process after the run (and its peak): the simulated devices run in their own process
  (`ems sim`), started at the same site time and speed, as real devices would be elsewhere.

    .venv/bin/python bench/bench_service.py --speed 60 --hours 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drivers.modbus.transport import percentile  # noqa: E402
from ems.cli.run_cmd import run_service  # noqa: E402
from ems.config import load_site  # noqa: E402
from ems.store import Store  # noqa: E402


def current_rss_mb() -> float:
    """Resident set size now (VmRSS), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=60.0)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "service.json")
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        help="Config override, e.g. service.forecast=model")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    site = load_site("guangdong_factory", args.sets)
    store = Store.at_path(Path(tempfile.mkdtemp()) / "ems.sqlite")
    start = datetime(2025, 7, 15, 0, 0, tzinfo=UTC)
    wall_s = args.hours * 3600 / args.speed
    ems = str(Path(sys.executable).parent / "ems")
    sim = subprocess.Popen([ems, "sim", "guangdong_factory", "--speed", f"{args.speed:g}",
                            "--start", start.isoformat(), "--period", "0.1"],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        for line in sim.stdout:
            if line.startswith("simulating from"):
                break
        service = asyncio.run(run_service(site, store, False, args.speed, start, wall_s))
    finally:
        sim.send_signal(signal.SIGINT)
        sim.wait(timeout=30)
    lat = sorted(service.control_latency_s)
    during = sorted(service.control_latency_during_solve_s)
    result = {
        "command": f"python bench/bench_service.py --speed {args.speed:g} --hours {args.hours:g}"
                   + "".join(f" --set {x}" for x in args.sets),
        "site": "guangdong_factory", "speed": args.speed, "site_hours": args.hours,
        "writes_measured": len(lat),
        "control_latency_p50_ms": 1000 * percentile(lat, 0.50) if lat else None,
        "control_latency_p99_ms": 1000 * percentile(lat, 0.99) if lat else None,
        "control_latency_mean_ms": 1000 * statistics.fmean(lat) if lat else None,
        "writes_measured_during_solves": len(during),
        "control_latency_during_solves_p99_ms": 1000 * percentile(during, 0.99) if during else None,
        "rss_after_run_mb": current_rss_mb(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "plans": service.status.plans_done, "plans_skipped": service.status.plans_skipped,
        "dispatch_cycles": service.status.dispatch_cycles, "writes_failed": service.status.writes_failed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
