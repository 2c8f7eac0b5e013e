"""Polling cost: 50 simulated devices (mixed profiles, about 2,500 registers) on loopback, polled
at 1 Hz by one :class:`drivers.poller.Poller`.

The servers run in a child process, so the CPU time measured (``time.process_time`` of this
process over the wall time of the run) is the poller's alone. Latency is the time one device poll
(all its read requests) took. Targets: at most 15 % of one core, p99 at most 50 ms.

    .venv/bin/python bench/bench_polling.py [--duration 60] [--json]

``--gateway`` measures a shared link instead: one Modbus TCP gateway on one port with 8 unit ids
(SDM630 images), of which 2 never answer (dead units on the gateway's serial side); the 8 devices
are polled at 1 Hz through the one connection. Reported: the healthy units' poll latency and how
often their latest reading is fresh (sampled every 100 ms), and how often the dead units were
actually asked.

    .venv/bin/python bench/bench_polling.py --gateway [--duration 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _common import RESULTS, machine_info

from drivers.modbus.profile import Profile

MIX: list[tuple[str, int]] = [
    ("sunspec_inverter", 8),
    ("sunspec_battery", 6),
    ("sunspec_meter", 6),
    ("eastron_sdm630", 10),
    ("alfen_ng9xx", 10),
    ("abb_terra_ac", 5),
    ("enapter_el", 5),
]
"""Profiles and how many devices of each (50 in all)."""

FALLBACK = "alfen_ng9xx"
"""Served instead of a SunSpec profile when drivers.sunspec is not available."""

TARGET_CPU_SHARE = 0.15
TARGET_P99_S = 0.050


def device_profiles() -> list[tuple[str, Profile, Any]]:
    from drivers.sim.device_profiles import ProfileUnavailable, profile_for_device

    out: list[tuple[str, Profile, Any]] = []
    for name, count in MIX:
        try:
            profile, installer = profile_for_device(name)
        except ProfileUnavailable:
            profile, installer = profile_for_device(FALLBACK)
        out += [(f"{name}_{i + 1}", profile, installer) for i in range(count)]
    return out


def serve(conn: Connection) -> None:
    """Child process: serve every device on a free loopback port until told to stop."""

    async def main() -> None:
        from drivers.sim.register_server import RegisterServer

        servers = []
        for name, profile, installer in device_profiles():
            server = RegisterServer(profile, "127.0.0.1", 0, profile.unit_id)
            await server.start()
            if installer is not None:
                installer(server)
            servers.append((name, server))
        conn.send([(name, s.profile.name, s.port, s.unit_id) for name, s in servers])
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_reader(conn.fileno(), stop.set)
        cpu0 = time.process_time()
        await stop.wait()
        conn.send(time.process_time() - cpu0)
        for _, s in servers:
            await s.stop()

    asyncio.run(main())


GATEWAY_UNITS = tuple(range(1, 9))
DEAD_UNITS = (7, 8)
GATEWAY_PROFILE = "eastron_sdm630"


def serve_gateway(conn: Connection) -> None:
    """Child process: one Modbus TCP gateway for GATEWAY_UNITS, silent for DEAD_UNITS."""
    import struct
    from collections import Counter

    async def main() -> None:
        from drivers.profiles import get_profile
        from drivers.sim.register_server import RegisterServer

        profile = get_profile(GATEWAY_PROFILE)
        units = {u: RegisterServer(profile, unit_id=u) for u in GATEWAY_UNITS if u not in DEAD_UNITS}
        for server in units.values():
            server.set_point("voltage_l1_v", 230.0)
            server.set_point("total_active_power_net_w", 1000.0)
        asked: Counter[int] = Counter()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    tid, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                    pdu = await reader.readexactly(length - 1)
                    asked[unit] += 1
                    if unit not in units:
                        continue  # a dead unit behind the gateway: no answer at all
                    answer = units[unit]._answer(unit, pdu)
                    writer.write(struct.pack(">HHHB", tid, 0, len(answer) + 1, unit) + answer)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        conn.send(server.sockets[0].getsockname()[1])
        stop = asyncio.Event()
        asyncio.get_running_loop().add_reader(conn.fileno(), stop.set)
        await stop.wait()
        conn.send(dict(asked))
        server.close()

    asyncio.run(main())


async def poll_gateway(port: int, duration_s: float) -> dict[str, Any]:
    from drivers.poller import Poller, PollTarget
    from drivers.profiles import get_profile

    profile = get_profile(GATEWAY_PROFILE)
    targets = [PollTarget(f"unit_{u}", profile, "127.0.0.1", port, u, interval_s=1.0) for u in GATEWAY_UNITS]
    healthy = [t.name for t in targets if t.unit_id not in DEAD_UNITS]
    poller = Poller(targets, timeout_s=1.0)
    fresh = samples = 0
    poller.start()
    t_end = time.perf_counter() + duration_s
    while time.perf_counter() < t_end:
        await asyncio.sleep(0.1)
        for name in healthy:
            samples += 1
            fresh += poller.latest(name)["voltage_l1_v"].value is not None
    await poller.stop()
    latencies = [x for n in healthy for x in poller.stats(n).latencies]
    return {
        "units": len(GATEWAY_UNITS),
        "dead_units": list(DEAD_UNITS),
        "interval_s": 1.0,
        "timeout_s": 1.0,
        "duration_s": duration_s,
        "healthy_polls": sum(poller.stats(n).polls for n in healthy),
        "healthy_polls_with_errors": sum(poller.stats(n).errors for n in healthy),
        "healthy_fresh_share": round(fresh / samples, 4) if samples else None,
        "healthy_poll_latency_ms": {
            "p50": round(1000 * percentile(latencies, 0.50), 2),
            "p99": round(1000 * percentile(latencies, 0.99), 2),
            "max": round(1000 * max(latencies), 2),
        },
        "dead_unit_polls": sum(poller.stats(f"unit_{u}").polls for u in DEAD_UNITS),
    }


def run_gateway(duration_s: float, out: Path, as_json: bool) -> None:
    info = machine_info()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve_gateway, args=(child,), daemon=True)
    proc.start()
    port = parent.recv()
    result = asyncio.run(poll_gateway(port, duration_s))
    parent.send("stop")
    asked = parent.recv()
    result["requests_reaching_dead_units"] = sum(asked.get(u, 0) for u in DEAD_UNITS)
    proc.join(10)
    doc = {"benchmark": "polling_gateway", "machine": info, "result": result}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        lat = result["healthy_poll_latency_ms"]
        print(f"gateway, {result['units']} units ({len(DEAD_UNITS)} dead), {duration_s:g} s: healthy units "
              f"fresh {100 * result['healthy_fresh_share']:.1f} % of samples, "
              f"{result['healthy_polls_with_errors']}/{result['healthy_polls']} polls with errors, "
              f"latency p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms; "
              f"{result['requests_reaching_dead_units']} requests reached the dead units "
              f"({result['dead_unit_polls']} polls)")
        print(f"wrote {out}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def poll_for(devices: list[tuple[str, str, int, int]], duration_s: float) -> dict[str, Any]:
    from drivers.poller import Poller, PollTarget

    profiles = {name: profile for name, profile, _ in device_profiles()}
    targets = [PollTarget(name, profiles[name], "127.0.0.1", port, unit, interval_s=1.0)
               for name, _, port, unit in devices]
    registers = sum(p.width for t in targets for p in t.profile.points.values())
    poller = Poller(targets, timeout_s=1.0)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    poller.start()
    await asyncio.sleep(duration_s)
    await poller.stop()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    latencies = [x for n in poller.names for x in poller.stats(n).latencies]
    polls = sum(poller.stats(n).polls for n in poller.names)
    errors = sum(poller.stats(n).errors for n in poller.names)
    return {
        "devices": len(targets),
        "registers": registers,
        "profiles": {name: count for name, count in MIX},
        "served_profiles": sorted({p for _, p, _, _ in devices}),
        "interval_s": 1.0,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 3),
        "cpu_share_of_one_core": round(cpu / wall, 4),
        "polls": polls,
        "polls_with_errors": errors,
        "poll_latency_ms": {
            "p50": round(1000 * percentile(latencies, 0.50), 2),
            "p99": round(1000 * percentile(latencies, 0.99), 2),
            "max": round(1000 * max(latencies), 2),
            "mean": round(1000 * statistics.fmean(latencies), 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="Seconds of polling.")
    parser.add_argument("--json", action="store_true", help="Print the result as JSON.")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--gateway", action="store_true",
                        help="One gateway, 8 unit ids of which 2 are dead, instead of 50 devices.")
    args = parser.parse_args()
    if args.gateway:
        run_gateway(args.duration, args.out or RESULTS / "polling_gateway.json", args.json)
        return
    args.out = args.out or RESULTS / "polling.json"

    info = machine_info()
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve, args=(child,), daemon=True)
    proc.start()
    devices = parent.recv()
    result = asyncio.run(poll_for(devices, args.duration))
    parent.send("stop")
    result["server_process_cpu_s"] = round(parent.recv(), 3)
    proc.join(10)
    result["targets"] = {"cpu_share_of_one_core": TARGET_CPU_SHARE, "p99_ms": TARGET_P99_S * 1000}
    result["meets_targets"] = (result["cpu_share_of_one_core"] <= TARGET_CPU_SHARE
                               and result["poll_latency_ms"]["p99"] <= TARGET_P99_S * 1000)
    doc = {"benchmark": "polling", "machine": info, "result": result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        lat = result["poll_latency_ms"]
        print(f"{result['devices']} devices, {result['registers']} registers, {result['polls']} polls "
              f"({result['polls_with_errors']} with errors) in {result['wall_s']} s")
        print(f"poller CPU {result['cpu_s']} s = {100 * result['cpu_share_of_one_core']:.1f} % of one core; "
              f"poll latency p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
