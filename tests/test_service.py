"""The site service end to end: the bundled Guangdong site's simulators on loopback, controlled
over Modbus TCP by `ems run`'s service on a fast site clock, with a real SQLite store, real HiGHS
solves and the API on a real socket.

The in-process runs are stepped (`run_service(..., stepped=True)`): site time moves only when the
service has nothing left to do at the present instant (solves, Modbus round trips), so a busy
machine makes a run slower, never different. A scenario lets site time pass with
`until(service, condition, ...)` or `service.scheduler.advance(seconds)`; the speed given is
nominal (the job timetable of a wall-clock run at that speed). The subprocess tests (kill -9,
the Docker command) run `ems run` on wall time."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy
from prometheus_client.parser import text_string_to_metric_families

from ems.cli.run_cmd import run_service
from ems.config import load_site
from ems.config.loader import LoadedSite
from ems.inputs.site_inputs import build_inputs
from ems.store import Store
from tests.http_provider import Provider, Request
from tests.site_files import site_on_free_ports

START = datetime(2025, 7, 15, 10, 30, tzinfo=UTC)  # 18:30 in Guangdong: the vans arrive
ROOT = Path(__file__).resolve().parents[1]


def site(tmp_path: Path, *sets: str) -> LoadedSite:
    """The Guangdong site on free device ports, its records under ``tmp_path``."""
    path, _ = site_on_free_ports(tmp_path)
    return load_site(str(path), list(sets))


async def until(service: Any, condition: Callable[[], bool], what: str, within_s: float = 3600.0) -> None:
    """Let site time pass, instant by instant, until ``condition`` holds; fail when it does not
    within ``within_s`` site seconds."""
    if not await service.scheduler.until(condition, within_s):
        raise AssertionError(f"{what}: not within {within_s:g} site seconds")


Scenario = Callable[[Any, Any], Awaitable[None]]


def run(loaded: LoadedSite, store: Store, speed: float, scenario: Scenario,
        api_port: int | None = None, start: datetime = START, limit_s: float = 300.0) -> Any:
    """Run the service with the site's simulators, stepped, until ``scenario(service, sim)``
    returns (the scenario moves site time). After ``limit_s`` wall seconds (a guard against a hang,
    not a timing check) the run is stopped and every task's stack is printed, so a stuck run fails
    with a diagnosis instead of hanging the suite."""
    async def main() -> Any:
        stop = asyncio.Event()
        tasks: list[asyncio.Task[None]] = []
        expired: list[bool] = []

        async def watchdog() -> None:
            await asyncio.sleep(limit_s)
            expired.append(True)
            for task in asyncio.all_tasks():
                buffer = io.StringIO()
                task.print_stack(limit=15, file=buffer)
                sys.stderr.write(f"--- task {task.get_name()}\n{buffer.getvalue()}")
            stop.set()

        guard = asyncio.get_running_loop().create_task(watchdog())

        def started(service: Any, sim: Any) -> None:
            async def go() -> None:
                try:
                    await scenario(service, sim)
                finally:
                    stop.set()
            tasks.append(asyncio.get_running_loop().create_task(go()))

        service = await run_service(loaded, store, True, speed, start, None, on_started=started,
                                    api_port=api_port, stop=stop, stepped=True)
        guard.cancel()
        assert not expired, f"the run did not end within {limit_s:g} s (task stacks on stderr)"
        for t in tasks:
            t.result()  # a failed assertion in the scenario fails the test
        return service
    return asyncio.run(main())


class ScaledLoad:
    """The simulated site's series with its load scaled by ``factor`` (forecast error: the
    planner sees the unscaled series)."""

    def __init__(self, inner: Any, factor: float) -> None:
        self.inner, self.factor = inner, factor

    def pv_available_kw(self, at: datetime) -> dict[str, float]:
        return dict(self.inner.pv_available_kw(at))

    def load_kw(self, at: datetime) -> dict[str, float]:
        return {k: self.factor * v for k, v in self.inner.load_kw(at).items()}

    def offtake_kg_per_h(self, at: datetime) -> dict[str, float]:
        return dict(self.inner.offtake_kg_per_h(at))


def test_stepped_time_moves_on_only_once_every_job_and_what_it_started_has_ended() -> None:
    """The stepped scheduler on its own: the plant steps before the jobs of an instant; a job's
    solve in a worker thread and the task it spawned end before the clock moves."""
    from concurrent.futures import ThreadPoolExecutor

    from ems.runtime.clock import SteppedClock
    from ems.runtime.scheduling import SteppedScheduler

    clock = SteppedClock(START, speed=60.0)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1.0)
    log: list[tuple[str, float]] = []
    tasks: set[asyncio.Task[None]] = set()
    executor = ThreadPoolExecutor(max_workers=1)

    async def main() -> bool:
        jobs = SteppedScheduler(clock, on_instant=lambda: log.append(("step", clock.sim_seconds())))
        jobs.watch(None, tasks)

        async def slow_plan() -> None:
            def solve() -> None:
                time.sleep(0.05)  # a solve holding its thread: no site time passes meanwhile
                log.append(("solved", clock.sim_seconds()))
            await asyncio.get_running_loop().run_in_executor(executor, solve)

        async def spawning() -> None:
            async def later() -> None:
                await asyncio.sleep(0.01)
                log.append(("spawned", clock.sim_seconds()))
            tasks.add(asyncio.get_running_loop().create_task(later()))
            log.append(("dispatch", clock.sim_seconds()))

        jobs.add_job(slow_plan, "plan", 900.0, first_at=START)
        jobs.add_job(spawning, "dispatch", 300.0)
        jobs.start()
        await jobs.advance(600.0)
        reached = await jobs.until(lambda: len([e for e in log if e[0] == "solved"]) >= 2, 3600.0)
        missed = await jobs.until(lambda: False, 60.0)
        jobs.shutdown()
        return reached and not missed

    assert asyncio.run(main())
    executor.shutdown()
    assert log == [("solved", 0.0), ("step", 300.0), ("dispatch", 300.0), ("spawned", 300.0),
                   ("step", 600.0), ("dispatch", 600.0), ("spawned", 600.0),
                   ("step", 900.0), ("solved", 900.0), ("dispatch", 900.0), ("spawned", 900.0)]
    assert clock.sim_seconds() == 900.0
    assert clock.now() == START + pd.Timedelta(seconds=900)


def test_a_simulated_day_plans_every_slot_holds_the_grid_limit_and_meets_every_need(
        tmp_path: Path) -> None:
    # 24 h in Guangdong from 23:00: six vans plugged in since 18:30 want 45 kWh each by 07:00
    # (and plug in again at 18:30); the electrolyser feeds the forklifts' 3 kg/h from 08:00 to
    # 20:00; PV by day; the factory's evening peak. A tight import limit (the evening load alone
    # exceeds it) and forecast error: the real load is 5 % above the series the planner sees.
    limit, error = 800.0, 1.05
    # plans keep 10 % under the limit: room for the 5 % error, which the batteries then cover
    # from the energy the plan kept for the hours the limit binds
    loaded = site(tmp_path, f"grid.import_limit_kw={limit:g}", "service.ev_default_energy_kwh=45",
                  "service.ev_default_dwell_hours=8", "service.plan_import_margin_fraction=0.1")
    store = Store.at_path(tmp_path / "ems.sqlite")
    start = datetime(2025, 7, 15, 15, 0, tzinfo=UTC)
    hours = 24.0
    delivered: dict[str, float] = {}
    delivered_first: dict[str, float] = {}
    levels: list[float] = []
    estimates: list[tuple[float, float]] = []
    held: dict[str, list[dict[str, float]]] = {"bess": [], "fleet_1": [], "pem": []}

    sim_sessions: list[list[Any]] = []

    async def scenario(service: Any, sim: Any) -> None:
        sim.series = ScaledLoad(sim.series, error)
        sim_sessions.extend(sim.sessions.values())
        while service.clock.sim_seconds() < hours * 3600:
            for c in sim.plant.chargers.values():
                if c.vehicle is not None:
                    delivered[c.vehicle.session_id] = c.vehicle.delivered_kwh
                    delivered_first.setdefault(c.vehicle.session_id, c.vehicle.delivered_kwh)
            levels.append(sim.plant.tanks["h2_tank"].level_kg)
            estimates.append((service.state.tank_kg["h2_tank"], levels[-1]))
            if service.clock.sim_seconds() > 3600:
                for n in ("bess", "fleet_1", "pem"):
                    held[n].append(sim.device(n).command_fields())
            await service.scheduler.advance(15.0)  # a sample every 15 site seconds

    service = run(loaded, store, 300.0, scenario, start=start, limit_s=1800.0)
    departures = {v.session_id: v.departure_utc for vs in sim_sessions for v in vs}
    t0, t1 = start, datetime(2026, 1, 1, tzinfo=UTC)
    plans = store.plans(t0, t1)
    slots = int(hours * 4)
    assert len(plans) >= slots - 2, f"{len(plans)} plans in {slots} slots"
    assert (plans["status"] != "failed").all()
    # setpoints reached the devices (what the simulated devices hold, read on their side): most
    # samples, not every one (on wall time at 300x a 60-s device watchdog is 0.2 s, which a busy
    # event loop could let lapse between keep-alives; stepped, keep-alives are never late).
    share = {n: sum(key in f for f in held[n]) / len(held[n])
             for n, key in (("bess", "power_net_kw"), ("fleet_1", "current_a"), ("pem", "run"))}
    assert all(v >= 0.8 for v in share.values()), share
    # from the moment the plan is followed (first write in mode auto, plus one dispatch period
    # for it to act). Before, the devices run on their defaults and the fallback rules.
    writes = store.setpoints(t0, t1)
    controlled = writes[writes["mode"] == "auto"]["ts"].min() + pd.Timedelta(minutes=5)
    every = store.telemetry(t0, t1)
    table = every[every["ts"] >= controlled].pivot_table(index="ts", columns=["device", "point"],
                                                         values="value", dropna=False)
    net = table[("grid", "power_net_kw")]
    assert len(net) >= 500
    # The meter holds the limit, except (a) for one dispatch period when a device does not do
    # what it was told (e.g. the electrolyser starting at its own 60 % minimum, or a battery
    # reaching its SOC floor mid-cycle), corrected at the next cycle (2 s of real time), and
    # (b) when nothing is left to control: the battery at its
    # SOC floor, no EV charging, the electrolyser off, and the factory alone over the limit
    # (the real load is above the plan's forecast after the plan used the battery to its floor).
    over = net > limit * 1.02
    ev_kw = sum(table[(f"fleet_{i}", "power_kw")] for i in range(1, 7))
    exhausted = ((table[("bess", "soc_pct")] <= 10.1) & (ev_kw < 0.5)
                 & (table[("pem", "h2_flow_kg_per_h")].fillna(0.0) <= 0.0)
                 & (table[("factory", "power_net_kw")] > limit))
    # by the next sample (a few by the one after), the meter is under the limit or nothing is
    # left to control
    settled = ~over | exhausted
    corrected = over & settled.shift(-1, fill_value=True)
    late = over & ~corrected & settled.shift(-2, fill_value=True)
    unexplained = over & ~corrected & ~late & ~exhausted
    assert not unexplained.any(), table[unexplained].T
    assert late.sum() <= 3, net[late]
    assert (over & exhausted).sum() <= 0.03 * len(net), net[over & exhausted]
    averages = net.groupby(net.index.floor("15min")).mean()
    controllable = ~exhausted.groupby(net.index.floor("15min")).any()
    assert averages[controllable].max() <= limit * 1.02, averages[controllable].max()
    # zero export: PV beyond what the site uses is stored or curtailed
    assert averages.min() >= -0.02 * limit, averages.min()
    # ... and the limit mattered: the factory and the vans alone drew more at some point
    drawn = every[((every["device"] == "factory") & (every["point"] == "power_net_kw"))
                  | (every["device"].str.startswith("fleet_") & (every["point"] == "power_kw"))]
    assert drawn.groupby("ts")["value"].sum().max() > limit
    # every van that left within the day got its 45 kWh
    end = start + pd.Timedelta(hours=hours)
    left = {sid: kwh for sid, kwh in delivered.items() if departures[sid] <= end}
    assert len(left) == 6 and min(left.values()) >= 45.0 - 0.5, delivered
    # the forklifts' offtake was met all day: the simulated tank never reached its floor
    assert min(levels) > load_site("guangdong_factory").config.hydrogen_tank[0].floor_kg
    # the service's tank estimate (production counted from the electrolyser, offtake from the
    # config) follows the simulated tank: within 2 kg of 250 at every sample
    assert max(abs(est - real) for est, real in estimates) <= 2.0, estimates[-5:]
    auto = writes[writes["mode"] == "auto"]
    assert len(auto) > 50 and auto["plan_id"].notna().all() and auto["price_per_kwh"].notna().all()
    assert service.status.mode == "auto" and service.status.plans_failed == 0
    check_kpis(store, loaded, start, hours, grid_all=every[(every["device"] == "grid")
                                                          & (every["point"] == "power_net_kw")],
               ev_kwh=sum(delivered[k] - delivered_first[k] for k in delivered))


def check_kpis(store: Store, loaded: LoadedSite, start: datetime, hours: float,
               grid_all: pd.DataFrame, ev_kwh: float) -> None:
    """The daily and monthly KPIs in the store against independent figures: the telemetry's
    grid power integrated, the vans' energy counted by the simulator, the run's price and carbon
    ranges, and the demand charge's price."""
    kpis = store.kpis("2025-07")
    assert {"2025-07-15", "2025-07-16", "2025-07"} <= set(kpis), sorted(kpis)
    month = kpis["2025-07"]
    for name in ("grid_import_kwh", "energy_cost", "emissions_kg", "ev_energy_kwh", "hydrogen_kg"):
        days = kpis["2025-07-15"].get(name, 0.0) + kpis["2025-07-16"].get(name, 0.0)
        assert days == pytest.approx(month[name], rel=1e-9), name
    ts = grid_all["ts"].drop_duplicates()
    dt_h = pd.Timedelta(ts.diff().median()).total_seconds() / 3600
    telemetry_kwh = float(grid_all["value"].clip(lower=0).sum()) * dt_h
    assert month["grid_import_kwh"] == pytest.approx(telemetry_kwh, rel=0.05)
    assert month["ev_energy_kwh"] == pytest.approx(ev_kwh, rel=0.1)
    frame = build_inputs(loaded, start, start + pd.Timedelta(hours=hours)).frame
    price, carbon = frame["import_price_per_kwh"], frame["carbon_average_g_per_kwh"]
    export_price = loaded.config.grid.export_tariff.price_per_kwh  # type: ignore[union-attr]
    per_kwh = (month["energy_cost"] + month["grid_export_kwh"] * export_price) / month["grid_import_kwh"]
    assert price.min() - 1e-9 <= per_kwh <= price.max() + 1e-9
    g_per_kwh = 1000 * month["emissions_kg"] / month["grid_import_kwh"]
    assert carbon.min() - 1e-6 <= g_per_kwh <= carbon.max() + 1e-6
    # the device's hydrogen counter against its flow meter times the configured kWh per kg
    kwh_per_kg = loaded.config.electrolyser[0].kwh_per_kg
    assert month["hydrogen_kg"] == pytest.approx(month["electrolyser_kwh"] / kwh_per_kg, rel=0.1, abs=0.5)
    charge = loaded.config.grid.demand_charges[0].price_per_kw
    assert month["demand_charge"] == pytest.approx(charge * month["peak_import_kw"])
    assert month["total_cost"] == pytest.approx(month["energy_cost"] + month["demand_charge"])


def safe_fields(sim: Any) -> dict[str, dict[str, float]]:
    return {name: sim.device(name).command_fields() for name in ("bess", "fleet_1", "pem", "roof_pv")}


def test_a_device_lost_mid_run_falls_back_raises_an_alarm_and_resumes(tmp_path: Path) -> None:
    store = Store.at_path(tmp_path / "ems.sqlite")
    events: list[str] = []

    async def scenario(service: Any, sim: Any) -> None:
        await until(service, lambda: service.status.mode == "auto", "auto mode")
        sim.faults("bess").no_answer = True
        await until(service, lambda: service.status.devices_online.get("bess") is False, "bess offline")
        await until(service, lambda: "bess" in service.guard_fallbacks, "battery fallback")
        events.append("lost")
        sim.faults("bess").clear()
        await until(service, lambda: service.status.devices_online.get("bess") is True, "bess back")
        await until(service, lambda: "bess" not in service.guard_fallbacks, "battery back to the plan")
        events.append("back")

    service = run(site(tmp_path), store, 60.0, scenario)
    assert events == ["lost", "back"]
    alarms = store.alarms()
    offline = alarms[(alarms["device"] == "bess") & (alarms["code"] == "device_offline")]
    assert len(offline) == 1 and offline["cleared_at"].notna().all()
    assert service.status.mode == "auto"


def test_a_failing_solver_means_the_previous_plan_then_fallback(tmp_path: Path) -> None:
    """A failed solve does not cost a slot: the previous plan goes on, shifted to now, until it is
    ``service.previous_plan_valid_h`` old; then the rules take over."""
    store = Store.at_path(tmp_path / "ems.sqlite")
    seen: dict[str, Any] = {}

    async def scenario(service: Any, sim: Any) -> None:
        await until(service, lambda: service.status.mode == "auto", "auto mode")

        def broken(problem: Any) -> Any:
            raise RuntimeError("solver crashed")

        service.planner.solve = broken
        await until(service, lambda: not service._solving, "the running solve to end")
        await service.plan_job("test")
        await service.dispatch_job()
        seen["after_failure"] = (service.status.mode, service.status.mode_reason, service.status.plan_id)
        await until(service, lambda: service.status.mode == "fallback", "fallback", within_s=3600)
        seen["fallback"] = service.status.mode_reason

    service = run(site(tmp_path, "service.previous_plan_valid_h=0.5"), store, 60.0, scenario)
    mode, reason, plan_id = seen["after_failure"]
    assert mode == "auto" and plan_id is not None
    assert reason == "planning failed: RuntimeError: solver crashed; following the previous plan"
    assert seen["fallback"].startswith("planning failed: RuntimeError: solver crashed; plan is 3")
    alarms = store.alarms(open_only=True)
    assert ("planner", "planning_failed") in set(zip(alarms["device"], alarms["code"], strict=True))
    assert service.status.plans_failed >= 1


def test_shutdown_leaves_every_device_in_its_safe_state(tmp_path: Path) -> None:
    store = Store.at_path(tmp_path / "ems.sqlite")
    sims: list[Any] = []

    async def scenario(service: Any, sim: Any) -> None:
        sims.append(sim)
        await until(service, lambda: service.status.mode == "auto", "auto mode")
        await until(service, lambda: abs(sim.device("bess").command_fields().get("power_net_kw", 0.0)) > 1.0,
                    "the battery following the plan")

    run(site(tmp_path), store, 60.0, scenario)
    fields = safe_fields(sims[0])
    assert fields["bess"]["power_net_kw"] == 0.0
    assert fields["fleet_1"]["current_a"] == 6.0  # the chargers' safe current
    assert fields["pem"]["run"] == 0.0
    assert fields["roof_pv"].get("limit_pct", 100.0) == 100.0


def test_api_needs_a_token_for_writes_and_an_override_changes_the_next_plan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMS_API_TOKEN", "s3cret-api-token-16")
    store = Store.at_path(tmp_path / "ems.sqlite")
    port = _free_port()
    results: dict[str, Any] = {}

    async def scenario(service: Any, sim: Any) -> None:
        await until(service, lambda: service.status.mode == "auto", "auto mode")
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=5.0) as client:
            results["status"] = (await client.get("/status")).json()
            results["no_token"] = (await client.put("/mode", json={"mode": "pause"})).status_code
            auth = {"Authorization": "Bearer s3cret-api-token-16"}
            bad = await client.put("/mode", json={"mode": "nap"}, headers=auth)
            results["bad"] = (bad.status_code, bad.json())
            results["openapi"] = (await client.get("/openapi.json")).json()["paths"]
            plans_before = service.status.plans_done
            reserve = await client.put("/battery/bess/reserve", json={"soc_min_fraction": 0.6},
                                       headers=auth)
            results["reserve"] = reserve.status_code
            await until(service, lambda: service.status.plans_done > plans_before, "a new plan")
            results["soc"] = list(service.plan.series["bess.soc_kwh"])
            paused = await client.put("/mode", json={"mode": "pause"}, headers=auth)
            results["pause"] = paused.status_code
            await service.dispatch_job()
            results["mode"] = service.status.mode
            results["metrics"] = (await client.get("/metrics")).text

    run(site(tmp_path), store, 60.0, scenario, api_port=port)
    assert results["status"]["mode"] == "auto" and "bess" in results["status"]["battery_soc_fraction"]
    assert results["no_token"] == 401
    code, body = results["bad"]
    assert code == 422 and body["detail"][0]["loc"] == ["body", "mode"]
    assert "/ev/{charger}/session" in results["openapi"]
    assert results["reserve"] == 200
    # the plan after the reserve keeps the battery at or above 60 % of 2000 kWh once it is there
    soc = results["soc"]
    above = [k for k, v in enumerate(soc) if v >= 1200 - 1e-6]
    assert above and all(v >= 1200 - 1e-3 for v in soc[above[0]:])
    assert results["pause"] == 200 and results["mode"] == "pause"
    assert 'ems_mode{mode="pause"} 1.0' in results["metrics"]
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(results["metrics"]):
        for sample in family.samples:
            if sample.name.endswith("_count"):
                counts[sample.name] = counts.get(sample.name, 0.0) + sample.value
    assert counts["ems_dispatch_cycle_seconds_count"] >= 2  # loop timings
    assert counts["ems_dispatch_interval_seconds_count"] >= 1
    assert counts["ems_plan_solve_seconds_count"] >= 2
    assert counts["ems_control_latency_seconds_count"] >= 1


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _plans_in(db: Path) -> int:
    """Plans in the service's SQLite store, read only (0 before it has made its tables): a test
    opening a `Store` while the service creates the same tables makes one of them fail."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
            return int(con.execute("SELECT count(*) FROM plans").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_kill_9_and_restart_resumes_from_the_store(tmp_path: Path) -> None:
    db = tmp_path / "ems.sqlite"
    url = f"sqlite:///{db}"
    config, _ = site_on_free_ports(tmp_path)
    args = [str(Path(sys.executable).parent / "ems"), "run", str(config), "--simulate",
            "--speed", "120", "--start", "2025-07-15T18:40", "--store", url, "--api-port", "0", "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180  # a guard against a hang (a busy machine is slow)
        while True:
            assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
            if _plans_in(db) >= 2:  # the service has made its tables: opening the store is safe
                store = Store(url)
                # the first plan step has been booked (its billing period is known)
                ready = store.count("telemetry") > 0 and store.get_state("ev_sessions") and \
                    store.kpis("2025-07") and (store.get_state("billing") or {}).get("period")
                store.close()
                if ready:
                    break
            assert time.monotonic() < deadline, "the service did not plan and record in time"
            time.sleep(0.1)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    store = Store(url)
    telemetry_before = store.count("telemetry")
    sessions_before = {s["session_id"] for s in store.get_state("ev_sessions")}
    billing_before = store.get_state("billing")
    imported_before = store.kpis("2025-07")["2025-07"]["grid_import_kwh"]
    last_plan = store.latest_plan()
    writes_before = store.count("setpoint_writes")
    store.close()
    assert last_plan is not None

    # the restart goes on a minute after the last plan's slot began (time moved on)
    restart = (last_plan["slot_start"] + pd.Timedelta(minutes=1)).isoformat()
    again = [*args[:args.index("--start") + 1], restart, *args[args.index("--start") + 2:]]
    second = subprocess.run([*again, "--duration", "4"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    with Store(url).engine.connect() as c:
        resumed = c.execute(sqlalchemy.text(
            "SELECT count(*) FROM setpoint_writes WHERE id > :n AND plan_id = :p AND mode = 'auto'"),
            {"n": writes_before, "p": last_plan["id"]}).scalar()
    # until its first new plan is ready, the restarted service follows the last stored one
    assert resumed and resumed > 0
    store = Store(url)
    assert store.count("telemetry") >= telemetry_before  # nothing committed was lost
    sessions_after = {s["session_id"] for s in store.get_state("ev_sessions")}
    assert sessions_before and sessions_before <= sessions_after  # the same vans, resumed
    billing_after = store.get_state("billing")
    assert billing_after["period"] == billing_before["period"] == "2025-07"
    assert billing_after["peak_import_kw"] >= billing_before["peak_import_kw"]
    # the month's KPIs go on from the store's values (the second run adds to them)
    assert store.kpis("2025-07")["2025-07"]["grid_import_kwh"] > imported_before
    store.close()


def test_the_docker_image_start_command_runs(tmp_path: Path) -> None:
    """The image's ENTRYPOINT + CMD (docker/Dockerfile) start the service, which stops cleanly
    on SIGTERM (what `docker stop` sends) and leaves its records."""
    import shlex

    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    entry = json.loads(next(ln for ln in dockerfile.splitlines() if ln.startswith("ENTRYPOINT"))[10:])
    cmd = json.loads(next(ln for ln in dockerfile.splitlines() if ln.startswith("CMD"))[3:])
    assert entry == ["/app/.venv/bin/ems", "run"] and cmd[0] == "guangdong_factory"
    config, _ = site_on_free_ports(tmp_path)
    args = [str(Path(sys.executable).parent / "ems"), *entry[1:], str(config), *cmd[1:],
            "--store", f"sqlite:///{tmp_path / 'ems.sqlite'}", "--api-port", str(_free_port())]
    out_path, err_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out_path.open("w") as out_file, err_path.open("w") as err_file:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out_file, stderr=err_file, text=True)
        try:
            db_ready = False
            deadline = time.monotonic() + 180  # a guard against a hang
            while not db_ready:
                assert proc.poll() is None and time.monotonic() < deadline, shlex.join(args)
                # a plan is stored and the service follows it (the mode change is logged)
                db_ready = _plans_in(tmp_path / "ems.sqlite") >= 1 and '"to": "auto"' in err_path.read_text()
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:  # a failed check must not leave the service running
                proc.kill()
                proc.wait()
    out, err = out_path.read_text(), err_path.read_text()
    assert proc.returncode == 0, err
    assert "devices left in their safe state" in out and "Traceback" not in err
    # the image logs JSON lines: one per plan with its headline figures, one per mode change
    events = [json.loads(line) for line in err.splitlines() if line.strip()]
    plan = next(e for e in events if e.get("event") == "plan")
    assert {"time", "level", "message", "slot_start", "cost", "emissions_kg", "binding",
            "solve_s"} <= set(plan)
    assert plan["status"] == "optimal" and isinstance(plan["binding"], list)
    assert any(e.get("event") == "mode" and e["to"] == "auto" for e in events)


def test_live_prices_are_fetched_new_data_replans_and_a_bad_reply_raises_an_alarm(
        tmp_path: Path, provider: Provider) -> None:
    """The site on Nord Pool day-ahead prices (a local server in Nord Pool's recorded shape):
    the first plan uses the fetched prices; new prices re-plan at once; a malformed reply keeps
    the last good prices and raises a signal_stale alarm, cleared when the source is back."""
    level = {"eur_per_mwh": 100.0, "broken": False}

    def nordpool_day(req: Request) -> tuple[int, bytes]:
        if level["broken"]:
            return 200, b"{not json"
        day = req["query"]["date"]
        doc = json.loads((ROOT / "tests" / "fixtures" / "signals"
                          / "nordpool_dayahead_2024-10-27_ee_fi.json").read_bytes())
        start = pd.Timestamp(day, tz="Europe/Oslo").tz_convert("UTC")
        doc["deliveryDateCET"] = day
        doc["multiAreaEntries"] = [
            {"deliveryStart": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
             "deliveryEnd": (t + pd.Timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "entryPerArea": {"FI": level["eur_per_mwh"] + t.hour}}
            for t in pd.date_range(start, start + pd.Timedelta(days=1), freq="h", inclusive="left")]
        return 200, json.dumps(doc).encode()

    provider.routes["/nordpool"] = nordpool_day
    path, _ = site_on_free_ports(tmp_path)
    text = path.read_text(encoding="utf-8")
    tou = text[text.index("[grid.tariff]"):text.index("[grid.export_tariff]")]
    text = text.replace(tou, f'''[grid.tariff]
kind = "dynamic"
exchange_rate = 7.8
source = {{ provider = "nordpool", area = "FI", base_url = "{provider.url}/nordpool" }}

''')
    state = f'state_dir = "{tmp_path / "state"}"'
    text = text.replace('name = "guangdong_factory"\n', f'name = "guangdong_factory"\n{state}\n')
    path.write_text(text, encoding="utf-8")
    loaded = load_site(str(path), ["service.signals_every_s=120"])
    store = Store.at_path(tmp_path / "ems.sqlite")
    seen: dict[str, Any] = {}

    def cny_per_kwh(eur_per_mwh: float, slot: str) -> float:
        return (eur_per_mwh + pd.Timestamp(slot).hour) / 1000 * 7.8

    async def scenario(service: Any, sim: Any) -> None:
        latest = store.latest_plan()
        assert latest is not None
        seen["first"] = (latest["slot_start"].isoformat(), latest["body"]["import_price_per_kwh"][0])
        level["eur_per_mwh"] = 300.0
        await until(service,
                    lambda: "new import_price data" in (store.latest_plan() or {}).get("headline", ""),
                    "a plan on the new prices")
        latest = store.latest_plan()
        assert latest is not None
        seen["new"] = (latest["slot_start"].isoformat(), latest["body"]["import_price_per_kwh"][0])
        level["broken"] = True
        stale = store.alarms(open_only=True)
        await until(service, lambda: "signal_stale" in set(store.alarms(open_only=True)["code"]),
                    "a stale alarm")
        seen["stale"] = store.alarms(open_only=True).to_dict("records")
        seen["mode_while_stale"] = service.status.mode
        level["broken"] = False
        await until(service, lambda: "signal_stale" not in set(store.alarms(open_only=True)["code"]),
                    "the stale alarm cleared")
        assert stale.empty or "signal_stale" not in set(stale["code"])

    run(loaded, store, 60.0, scenario)
    slot, price = seen["first"]
    assert price == pytest.approx(cny_per_kwh(100.0, slot))
    slot, price = seen["new"]
    assert price == pytest.approx(cny_per_kwh(300.0, slot))
    alarm = next(a for a in seen["stale"] if a["code"] == "signal_stale")
    assert alarm["device"] == "signal:import_price" and "grid.tariff (nordpool)" in alarm["message"]
    assert seen["mode_while_stale"] == "auto"  # planning goes on with the last good prices
    assert {r["query"]["deliveryArea"] for r in provider.paths("/nordpool")} == {"FI"}


def test_the_service_keeps_its_records_in_postgresql(tmp_path: Path, pg_url: str) -> None:
    """The same service on a real PostgreSQL server: plans, telemetry, setpoint writes with their
    audit trail, KPIs and the runtime state it resumes from."""
    store = Store(pg_url)
    from ems.store.schema import metadata

    metadata.drop_all(store.engine)  # one server for the session: start empty
    metadata.create_all(store.engine)

    async def scenario(service: Any, sim: Any) -> None:
        await until(service, lambda: service.status.plans_done >= 2 and store.count("telemetry") > 0
                    and bool(store.kpis("2025-07")), "plans, telemetry and KPIs in PostgreSQL")

    run(site(tmp_path), store, 60.0, scenario)
    t0, t1 = START, datetime(2026, 1, 1, tzinfo=UTC)
    assert len(store.plans(t0, t1)) >= 2
    writes = store.setpoints(t0, t1)
    auto = writes[writes["mode"] == "auto"]
    assert len(auto) > 0 and auto["price_per_kwh"].notna().all()
    assert "bess" in set(writes[writes["mode"] == "safe"]["device"])  # the shutdown
    assert "2025-07" in store.kpis("2025-07") and store.get_state("ev_sessions")
    store.close()


def test_model_forecasts_learn_from_the_measured_load(tmp_path: Path) -> None:
    """``service.forecast = "model"``: plans take PV and load from forecasts built on what the
    service measured, not from the series files. The real load runs 15 % above the recorded
    series; after two hours the load forecast's recent-error correction carries that excess into
    the next plan, fading with the lead time."""
    loaded = site(tmp_path, "service.forecast=model")
    store = Store.at_path(tmp_path / "ems.sqlite")
    start = datetime(2025, 7, 16, 1, 0, tzinfo=UTC)  # 09:00 in Guangdong: the factory at work

    async def scenario(service: Any, sim: Any) -> None:
        sim.series = ScaledLoad(sim.series, 1.15)
        await service.scheduler.advance(2.5 * 3600)

    service = run(loaded, store, 600.0, scenario, start=start)
    assert service.status.plans_failed == 0 and service.status.plans_done >= 8
    frame = service.inputs.frame
    recorded = build_inputs(loaded, frame.index[0], frame.index[-1] + pd.Timedelta(minutes=15)).frame
    forecast, series = frame["load:factory_kw"], recorded["load:factory_kw"]
    assert not np.allclose(forecast.to_numpy(), series.to_numpy())  # not the file
    # the same model without the service's telemetry (the recorded series only)
    from ems.runtime.forecasts import RuntimeForecaster

    empty = Store.at_path(tmp_path / "empty.sqlite")
    unmeasured = RuntimeForecaster(loaded, empty).forecast(frame.index, frame.index[0].to_pydatetime())
    lift = forecast - unmeasured["load:factory_kw"]
    # the measured excess (15 % of ~900 kW) lifts the next steps; a day ahead it has faded
    assert lift.iloc[0] > 0.05 * series.iloc[0], (lift.iloc[0], series.iloc[0])
    assert abs(lift.iloc[96]) < 0.2 * lift.iloc[0]
    # PV from the clear-sky model times the measured performance: bounded by the array's rating
    pv = frame["pv:roof_pv_kw"]
    assert (pv >= 0).all() and (pv <= loaded.config.pv[0].kwp).all() and pv.max() > 100
