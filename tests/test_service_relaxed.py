"""A limit that cannot hold is never hidden: with an import limit under the site's own load, the
plan's relaxed import limit is in `/status`, `/plan`, the store, the plan's log line and an
alarm, its penalty apart from the cost; and the meter above the limit raises an alarm."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from ems.store import Store
from tests.test_service import _free_port, run, site, until

IMPORT_LIMIT_KW = 100.0


def test_a_relaxed_import_limit_and_a_meter_above_it_are_shown_everywhere(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = Store.at_path(tmp_path / "ems.sqlite")
    port = _free_port()
    seen: dict[str, Any] = {}

    async def scenario(service: Any, sim: Any) -> None:
        await until(service, lambda: service.status.plans_done >= 1, "a plan")
        await until(service, lambda: any(store.alarms(open_only=True)["code"] == "import_limit_exceeded"),
                    "an alarm for the meter above the import limit", within_s=600)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as client:
            seen["status"] = (await client.get("/status")).json()
            seen["plan"] = (await client.get("/plan")).json()
            seen["alarms"] = (await client.get("/alarms", params={"open_only": True})).json()

    caplog.set_level(logging.INFO, logger="ems")
    # the battery starts at its floor: nothing can hold the meter under the limit
    loaded = site(tmp_path, f"grid.import_limit_kw={IMPORT_LIMIT_KW}", "battery.initial_soc_fraction=0.1")
    run(loaded, store, 60.0, scenario, api_port=port)

    plan = seen["status"]["plan"]
    relaxed = {s["limit"]: s for s in plan["slacks"]}
    assert relaxed["import_limit"]["asset"] == "grid" and relaxed["import_limit"]["amount"] > 100.0
    assert relaxed["import_limit"]["unit"] == "kWh"
    assert plan["penalty_cost"] > 0
    # the headline cost is money: penalties are shown apart, never inside it
    body = seen["plan"]["body"]
    costs = body["costs"]
    assert plan["cost"] == pytest.approx(sum(v for k, v in costs.items() if not k.startswith("penalty_")),
                                         abs=0.01)
    assert seen["plan"]["total_cost"] == pytest.approx(plan["cost"], abs=0.01)
    assert body["penalty_cost"] == pytest.approx(plan["penalty_cost"], abs=0.01)
    assert {s["limit"] for s in body["slacks"]} >= {"import_limit"}
    assert "RELAXED: import_limit of grid" in seen["plan"]["headline"]
    # an alarm while the limit is relaxed, and one for the meter beyond it
    codes = {(a["device"], a["code"]) for a in seen["alarms"]}
    assert ("grid", "relaxed_import_limit") in codes and ("grid", "import_limit_exceeded") in codes
    lines = [r for r in caplog.records if getattr(r, "event", None) == "plan"]
    assert lines and lines[0].levelname == "WARNING"
    assert any(s["limit"] == "import_limit" for s in lines[0].slacks)  # type: ignore[attr-defined]
