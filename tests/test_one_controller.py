"""One controller for the service and the what-if: the two are wired to the same decisions, and
the what-if's controller sees the plant only through what its devices report."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from drivers.sim.site_sim import ConstantSeries, VehicleSession
from ems.config import LoadedSite
from ems.control.controller import Decision, PlanInput, Slot
from ems.control.observe import Snapshot
from ems.inputs.site_inputs import build_inputs
from ems.runtime.clock import SiteClock
from ems.runtime.service import SiteService
from ems.site.plant import PlantSite
from ems.store import Store
from ems.whatif.closed_loop import whatif_controller
from optimizer import Plan
from optimizer.plan import SolverReport

START = datetime(2025, 7, 15, 2, 0, tzinfo=UTC)  # 10:00 in Guangdong


def series(site: LoadedSite, pv_kw: float, load_kw: float) -> ConstantSeries:
    cfg = site.config
    return ConstantSeries({p.name: pv_kw for p in cfg.pv}, {ld.name: load_kw for ld in cfg.load},
                          {o.name: 3.0 for o in cfg.hydrogen_offtake})


def a_plan(at: datetime) -> Plan:
    """A plan by hand: the battery discharges 300 kW, van v1 charges 11 kW, pem at 150 kW."""
    n = 8
    series = {"grid.import_kw": [900.0] * n, "grid.export_kw": [0.0] * n, "bess.discharge_kw": [300.0] * n,
              "bess.charge_kw": [0.0] * n, "bess.soc_kwh": [1000.0 - 78.0 * (k + 1) for k in range(n)],
              "pem.on": [1.0] * n, "pem.stack_kw": [150.0] * n, "roof_pv.output_kw": [400.0] * n,
              "roof_pv.curtailed_kw": [0.0] * n, "ev:v1.charge_kw": [11.0] * n}
    return Plan(instants_utc=[at + timedelta(minutes=15 * k) for k in range(n)], step_minutes=15,
                series=series, costs={}, emissions_kg=0.0, slacks=[],
                solver=SolverReport("optimal", "test", 0.0, 0.0, None, False, 0))


def same(a: Decision, b: Decision) -> bool:
    return (a.mode, a.mode_reason, a.setpoints, a.wanted.bound_by, a.guard.bound_by) == \
        (b.mode, b.mode_reason, b.setpoints, b.wanted.bound_by, b.guard.bound_by)


def test_the_service_and_the_whatif_are_wired_to_identical_decisions(guangdong: LoadedSite,
                                                                     tmp_path: Path) -> None:
    # the service as `ems run` builds it (not started: no devices needed to compare decisions),
    # its rule level from a plan's inputs; the what-if's controller at the service's 2 s period
    # with the same inputs
    service = SiteService(guangdong, Store.at_path(tmp_path / "ems.sqlite"), SiteClock(START, 1.0))
    inputs = build_inputs(guangdong, START, START + timedelta(days=2), signals=False)
    service._new_plan(a_plan(START), inputs)
    period = guangdong.config.service.dispatch_every_s
    whatif = whatif_controller(guangdong, period, inputs.frame, plan_steps_valid=2)
    assert service.controller.settings == whatif.settings
    plant = PlantSite(guangdong.config, series(guangdong, 400.0, 700.0), START,
                      [VehicleSession("fleet_1", "v1", START, START + timedelta(hours=4), 30.0)])
    plan = PlanInput(a_plan(START), session_on_charger={"fleet_1": "v1"})
    slot = Slot(800.0, 0.0, (True,), (650.0,))
    decisions = 0
    for k in range(150):  # 5 minutes at 2 s: plan-following, a reserve, a failed plan, a pause
        now = START + timedelta(seconds=period * k)
        if k == 40:
            for c in (service.controller, whatif):
                c.set_reserve("bess", 0.45)
        if k == 80:
            plan = dataclasses.replace(plan, failed="RuntimeError: solver crashed")
        if k == 120:
            service.controller.override = whatif.override = "pause"
        snap = Snapshot(now, plant.readings(), now, {"h2_tank": 100.0})
        mine, theirs = service.controller.step(snap, plan, slot), whatif.step(snap, plan, slot)
        assert same(mine, theirs), f"cycle {k}: {mine} != {theirs}"
        decisions += 1
        sp = theirs.setpoints
        plant.apply(sp.battery_net_kw, sp.ev_kw, sp.electrolyser_kw, sp.pv_limit_kw)
        plant.advance(period)
    assert decisions == 150


@pytest.mark.parametrize("control_s", [60])
def test_the_baseline_cannot_see_a_vehicles_hidden_need(guangdong: LoadedSite, control_s: int) -> None:
    # two plants alike but for what van v1 wants (2 kWh or 40 kWh): no charger reports it, so the
    # baseline (the controller in fallback) decides alike until the physics differ (the small one
    # is full and stops drawing), and keeps asking fleet_1 for full power in both
    cfg = guangdong.config
    controllers, plants = [], []
    for need in (2.0, 40.0):
        plants.append(PlantSite(cfg, series(guangdong, 0.0, 600.0), START,
                                [VehicleSession("fleet_1", "v1", START, START + timedelta(hours=8), need)]))
        controllers.append(whatif_controller(guangdong, control_s, build_inputs(
            guangdong, START, START + timedelta(days=1), signals=False).frame, plan_steps_valid=5))
    first_difference = None
    for k in range(30):
        now = START + timedelta(seconds=control_s * k)
        ds = []
        for ctl, plant in zip(controllers, plants, strict=True):
            d = ctl.step(Snapshot(now, plant.readings(), now, {"h2_tank": 100.0}), PlanInput(None),
                         Slot(2500.0, 0.0))
            sp = d.setpoints
            plant.apply(sp.battery_net_kw, sp.ev_kw, sp.electrolyser_kw, sp.pv_limit_kw)
            plant.advance(control_s)
            ds.append(d)
        assert ds[0].setpoints.ev_kw["fleet_1"] == ds[1].setpoints.ev_kw["fleet_1"] == pytest.approx(
            cfg.ev_charger[0].max_power_kw)
        if first_difference is None and not same(ds[0], ds[1]):
            first_difference = k
    small = plants[0].plant.chargers["fleet_1"].vehicle
    assert small is not None and small.delivered_kwh == pytest.approx(2.0)
    # 2 kWh at 22 kW × 0.92 takes 6 minutes: nothing differs before the small van is full
    assert first_difference is not None and first_difference >= 6
