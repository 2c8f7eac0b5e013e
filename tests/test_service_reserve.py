"""A battery reserve set through the API on the simulated site: the running service holds it
while it follows its plans, in fallback, when it enforces the import limit, and in its guard;
bad reserves are refused with the field and the value."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import httpx
import pytest

from ems.store import Store
from tests.test_service import _free_port, run, site, until

RESERVE = 0.6
CAPACITY_KWH = 2000.0


def test_a_reserve_set_through_the_api_holds_in_every_mode(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMS_API_TOKEN", "s3cret-api-token-16")
    store = Store.at_path(tmp_path / "ems.sqlite")
    port = _free_port()
    seen: dict[str, Any] = {"discharging_below": [], "bad": {}}

    def watch(sim: Any, phase: str) -> None:
        """A discharge command while the plant's SOC is under the reserve is a breach."""
        soc = sim.plant.batteries["bess"].soc_kwh / CAPACITY_KWH
        kw = sim.device("bess").command_fields().get("power_net_kw", 0.0)
        if soc < RESERVE - 1e-3 and kw > 1e-6:
            seen["discharging_below"].append((phase, soc, kw))

    async def scenario(service: Any, sim: Any) -> None:
        await until(service, lambda: service.status.mode == "auto", "auto mode")
        auth = {"Authorization": "Bearer s3cret-api-token-16"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as client:
            for bad in (1.0, True, "NaN", 0.99):
                r = await client.put("/battery/bess/reserve", json={"soc_min_fraction": bad}, headers=auth)
                seen["bad"][repr(bad)] = (r.status_code, r.text)
            r = await client.put("/battery/bess/reserve", json={"soc_min_fraction": RESERVE}, headers=auth)
            seen["ok"] = r.status_code
            plans = service.status.plans_done
            await until(service, lambda: service.status.plans_done > plans, "a plan with the reserve")
            seen["plan_soc"] = list(service.plan.series["bess.soc_kwh"])
            # plan-following: half an hour of site time, checked every 20 s
            for _ in range(90):
                await service.scheduler.advance(service.cfg.service.dispatch_every_s * 10)
                watch(sim, "auto")
            seen["guard_reserve"] = dict(service.controller.guard.reserves)
            r = await client.put("/mode", json={"mode": "fallback"}, headers=auth)
            seen["fallback"] = r.status_code
            for _ in range(90):
                await service.scheduler.advance(service.cfg.service.dispatch_every_s * 10)
                watch(sim, "fallback")
                seen.setdefault("modes", set()).add(service.status.mode)
                d = service.dispatch.decision
                seen.setdefault("bound", set()).update(
                    (name, why) for name in ("bess", "fleet_1") for why in d.reasons(name))

    # an import limit the evening load alone is over: the limit asks for every kW there is
    loaded = site(tmp_path, "grid.import_limit_kw=400", "battery.initial_soc_fraction=0.55")
    run(loaded, store, 60.0, scenario, api_port=port)
    for bad, (code, text) in seen["bad"].items():
        assert code == 422 and "soc_min_fraction" in text, (bad, code, text)
    assert seen["ok"] == 200 and seen["fallback"] == 200 and seen["modes"] == {"fallback"}
    assert seen["guard_reserve"] == {"bess": RESERVE}
    # the plan after the reserve never discharges the battery while it is under the reserve
    soc = seen["plan_soc"]
    under = RESERVE * CAPACITY_KWH - 1e-6
    assert all(b >= a - 1e-6 for a, b in itertools.pairwise(soc) if a < under), soc
    assert seen["discharging_below"] == []
    # in fallback the rules want the vans at full power and the battery to cover the load: the
    # import limit cut the vans, and the battery, under its reserve, gave nothing
    bound = seen["bound"]
    assert ("fleet_1", "grid import limit 400 kW") in bound, bound
    assert not any(name == "bess" and "import limit" in why for name, why in bound), bound
