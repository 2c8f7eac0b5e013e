"""A SunSpec device down when the device links start (an inverter asleep at night) is retried in
the background until found, then polled like the others. The device is an independent peer:
pyModbusTCP serving a register image laid out by pysunspec2."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ems.config import load_site
from ems.runtime.service import SiteService
from ems.site.modbus import DeviceLinks
from tests.drivers.support import run
from tests.site_files import site_on_free_ports

pytest.importorskip("sunspec2")
pytest.importorskip("pyModbusTCP")

PV = "roof_pv"


def pv_only_site(tmp_path: Path) -> Any:
    """The Guangdong site (free ports) with a device on its PV inverter only."""
    path, _ = site_on_free_ports(tmp_path)
    cfg = load_site(str(path)).config

    def no_device(assets: Any) -> list[Any]:
        return [a.model_copy(update={"device": None}) for a in assets]

    return cfg.model_copy(update={
        "grid": cfg.grid.model_copy(update={"device": None}),
        "battery": no_device(cfg.battery), "electrolyser": no_device(cfg.electrolyser),
        "load": no_device(cfg.load), "ev_charger": no_device(cfg.ev_charger),
    })


class AlarmLog:
    """Records the alarms the service raises and clears (its `Alarms` interface)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def raise_(self, device: str, code: str, severity: str, message: str) -> None:
        self.events.append(("raise", device, code))

    def clear(self, device: str, code: str) -> None:
        self.events.append(("clear", device, code))


def watched(links: DeviceLinks) -> Any:
    """What `SiteService._watch_devices` uses of the service: its links, alarms and plan requests."""
    return SimpleNamespace(links=links, alarms=AlarmLog(), _online={}, request_plan=lambda reason: None)


async def until(condition: Any, what: str, limit_s: float = 8.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
        await asyncio.sleep(0.02)


def test_sunspec_device_down_at_start_is_found_and_read_later(tmp_path: Path) -> None:
    from pyModbusTCP.server import ModbusServer

    from tests.drivers.test_sunspec_peers import EXPECTED, pysunspec_image

    cfg = pv_only_site(tmp_path)
    device = cfg.pv[0].device
    assert device is not None and device.profile == "sunspec_inverter"
    image = pysunspec_image(tmp_path)

    async def main() -> None:
        links = DeviceLinks(cfg, poll_interval_s=0.2, timeout_s=0.5, resolve_backoff_initial_s=0.05,
                            resolve_backoff_max_s=0.2)
        server = ModbusServer(host="127.0.0.1", port=device.port, no_block=True)
        try:
            await links.start()
            assert links.configured == [PV]
            assert PV in links.unresolved and PV not in links.links
            assert "cannot connect" in links.unresolved[PV]
            assert not links.online(PV)
            service = watched(links)
            SiteService._watch_devices(service)
            assert service.alarms.events == [("raise", PV, "device_offline")]
            assert service._online == {PV: False}  # shown in /status (devices_online)
            await until(lambda: links.resolve_attempts.get(PV, 0) >= 2, "a second attempt")
            waiting = links.diagnostics()["unresolved"][PV]
            assert waiting["attempts"] >= 2 and "cannot connect" in waiting["reason"]

            server.data_bank.set_holding_registers(40000, image)
            server.start()
            await until(lambda: PV in links.links, "the inverter linked")
            assert PV not in links.unresolved
            await until(lambda: links.online(PV), "the inverter read")
            assert links.poller is not None
            latest = links.poller.latest(PV)
            assert latest["ac_power_w"].value is not None
            assert math.isclose(float(latest["ac_power_w"].value), EXPECTED["ac_power_w"])  # type: ignore[arg-type]
            assert links.links[PV].writer is not None  # it can be commanded too
            diagnostics = links.diagnostics()
            assert diagnostics["unresolved"] == {}
            assert diagnostics["links"][f"127.0.0.1:{device.port}"]["units"][1]["answers"] >= 1
            SiteService._watch_devices(service)
            assert service.alarms.events[-1] == ("clear", PV, "device_offline")
            assert service._online == {PV: True}
        finally:
            await links.stop()
            server.stop()

    run(main())
