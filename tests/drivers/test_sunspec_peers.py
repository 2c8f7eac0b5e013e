"""SunSpec against an independent implementation: pysunspec2.

pysunspec2's own Modbus client scans our simulator image, and our discovery and driver read a
register image laid out by pysunspec2 (``FileClientDevice`` + ``get_mb()``) and served by
pyModbusTCP, not by our encoder or server.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus.device import ProfileDevice
from drivers.modbus.transport import ModbusTcpTransport
from drivers.sim.register_server import RegisterServer
from drivers.sunspec import (
    SUNSPEC_PROFILE_NAMES,
    discover,
    get_spec,
    install_image,
    resolve,
    standard_profile,
)
from drivers.sunspec.discovery import SunSpecMap
from tests.drivers.support import free_port, run
from tests.drivers.test_sunspec_profiles import TEST_SCALE_FACTORS, string_words, words

sunspec2 = pytest.importorskip("sunspec2")
pytest.importorskip("pyModbusTCP")


def pysunspec_scan(port: int) -> Any:
    from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

    device = SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=port, timeout=2)
    try:
        device.scan()
    finally:
        device.close()
    return device


def peer_point(device: Any, smap: SunSpecMap, spec_point: Any, spec_models: dict[str, list[int]]) -> Any:
    """pysunspec2's point object for one of our profile's points."""
    model_id = next(m for m in spec_models[spec_point.model] if smap.find(m) is not None)
    model = device.models[model_id][0]
    if spec_point.module is not None:
        return getattr(model.module[spec_point.module - 1], spec_point.point)
    return getattr(model, spec_point.point)


@pytest.mark.parametrize("common_length", [66, 65])
@pytest.mark.parametrize("name", SUNSPEC_PROFILE_NAMES)
def test_pysunspec2_scans_our_simulator(name: str, common_length: int) -> None:
    profile = standard_profile(name, common_length=common_length, scale_factors=TEST_SCALE_FACTORS)
    spec = get_spec(name)
    sfs = {p.scale_factor_point for p in profile.points.values() if p.scale_factor_point}

    async def main() -> None:
        async with RegisterServer(profile) as server:
            install_image(server, name, common_length=common_length, scale_factors=TEST_SCALE_FACTORS)
            for i, (pname, p) in enumerate(profile.points.items()):
                if pname in sfs or pname in ("manufacturer", "device_model", "serial_number"):
                    continue
                if i % 4 == 0:
                    continue  # left at its "not implemented" sentinel
                raw = (-1 if p.type.startswith("int") else 1) * (100 + i)
                server.set_registers("holding", p.address, words(p.type, raw))
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            try:
                smap = await discover(transport, 1)
                ours = await ProfileDevice(profile, transport).poll()
            finally:
                transport.close()
            device = await asyncio.to_thread(pysunspec_scan, server.port)

        assert [(m.model_id, m.model_addr, m.model_len) for m in device.model_list] == [
            (m.id, m.address, m.length) for m in smap.models
        ]
        common = device.models[1][0]
        assert (common.Mn.cvalue, common.Md.cvalue, common.SN.cvalue) == ("EMS Simulator", name, "SIM-0001")
        compared = 0
        for pname, sp in spec.points.items():
            theirs = peer_point(device, smap, sp, spec.models).cvalue
            reading = ours[pname]
            if reading.value is None:
                assert theirs is None, (pname, theirs, reading)
            elif isinstance(reading.value, str):
                assert theirs == reading.value, pname
            else:
                assert theirs is not None, (pname, reading)
                assert math.isclose(float(theirs), float(reading.value), rel_tol=1e-9), (pname, theirs)
            compared += 1
        assert compared == len(spec.points)

    run(main())


def test_pysunspec2_writes_our_power_limit() -> None:
    """pysunspec2 writes WMaxLimPct = 50 % with the scale factor it reads; our driver reads 50 %."""
    name = "sunspec_inverter"
    profile = standard_profile(name, scale_factors=TEST_SCALE_FACTORS)

    def write_limit(port: int) -> None:
        device = pysunspec_scan(port)
        device.connect()
        try:
            controls = device.models[123][0]
            controls.WMaxLimPct.cvalue = 50
            controls.WMaxLim_Ena.value = 1
            controls.write()
        finally:
            device.close()

    async def main() -> None:
        async with RegisterServer(profile) as server:
            install_image(server, name, scale_factors=TEST_SCALE_FACTORS)
            await asyncio.to_thread(write_limit, server.port)
            raw = server.get_registers("holding", profile.points["power_limit_pct"].address, 1)
            transport = ModbusTcpTransport("127.0.0.1", server.port, timeout_s=1.0)
            try:
                ours = await ProfileDevice(profile, transport).poll()
            finally:
                transport.close()
        assert raw == [500]  # 50 % at WMaxLimPct_SF = -1
        assert ours["power_limit_pct"].value == pytest.approx(50.0)
        assert ours["power_limit_enable"].value == 1

    run(main())


PEER_DEVICE = {
    "models": [
        {"ID": 1, "L": 66, "Mn": "Peer Maker", "Md": "Peer Inverter", "SN": "PEER-42", "Vr": "1.0"},
        {"ID": 103, "L": 50, "A": 1234, "A_SF": -2, "PhVphA": 2301, "V_SF": -1, "W": 4321, "W_SF": 1,
         "Hz": 4998, "Hz_SF": -2, "WH": 987654, "WH_SF": 0, "DCW": 4500, "DCW_SF": 0, "TmpCab": 355,
         "Tmp_SF": -1, "St": 4, "Evt1": 0, "Evt2": 0},
        {"ID": 120, "L": 26, "DERTyp": 4, "WRtg": 1000, "WRtg_SF": 1},
        {"ID": 121, "L": 30, "WMax": 100, "WMax_SF": 2},
        {"ID": 123, "L": 24, "WMaxLimPct": 750, "WMaxLimPct_RvrtTms": 60, "WMaxLim_Ena": 1,
         "WMaxLimPct_SF": -1},
        {"ID": 160, "L": 48, "DCA_SF": -2, "DCV_SF": -1, "DCW_SF": 0, "DCWH_SF": 0, "N": 2,
         "module": [{"ID": 1, "DCV": 6123, "DCW": 2100}, {"ID": 2, "DCV": 5987, "DCW": 2400}]},
    ]
}
"""Raw register values; pysunspec2 lays them out and leaves the rest "not implemented"."""

EXPECTED = {
    "manufacturer": "Peer Maker", "device_model": "Peer Inverter", "serial_number": "PEER-42",
    "ac_current_a": 12.34, "voltage_l1_v": 230.1, "ac_power_w": 43210.0, "frequency_hz": 49.98,
    "energy_wh": 987654, "dc_power_w": 4500, "cabinet_temperature_c": 35.5, "operating_state": 4,
    "events": 0, "rated_power_w": 10000.0, "max_power_w": 10000.0, "power_limit_pct": 75.0,
    "power_limit_timeout_s": 60, "power_limit_enable": 1, "string1_dc_voltage_v": 612.3,
    "string1_dc_power_w": 2100, "string2_dc_voltage_v": 598.7, "string2_dc_power_w": 2400,
}


def pysunspec_image(tmp_path: Path) -> list[int]:
    from sunspec2.file.client import FileClientDevice

    path = tmp_path / "peer.json"
    path.write_text(json.dumps(PEER_DEVICE), encoding="utf-8")
    device = FileClientDevice(str(path))
    device.scan()
    data = b"".join(m.get_mb() for m in device.model_list)
    regs = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    return string_words("SunS", 2) + regs + [0xFFFF, 0]


@pytest.mark.parametrize("base", [40000, 0, 50000])
def test_our_discovery_reads_a_pysunspec2_image_on_pymodbustcp(tmp_path: Path, base: int) -> None:
    from pyModbusTCP.server import ModbusServer

    image = pysunspec_image(tmp_path)
    port = free_port()
    server = ModbusServer(host="127.0.0.1", port=port, no_block=True)
    server.start()
    try:
        server.data_bank.set_holding_registers(base, image)

        async def main() -> None:
            transport = ModbusTcpTransport("127.0.0.1", port, timeout_s=1.0)
            try:
                smap = await discover(transport, 1)
                profile = resolve(get_spec("sunspec_inverter"), smap)
                result = await ProfileDevice(profile, transport).poll()
            finally:
                transport.close()
            assert smap.base == base
            peer_models = [(m["ID"], m["L"]) for m in PEER_DEVICE["models"]]
            assert [(m.id, m.length) for m in smap.models] == peer_models
            assert smap.models[0].address == base + 2
            want_common = {"Mn": "Peer Maker", "Md": "Peer Inverter", "SN": "PEER-42", "Vr": "1.0"}
            assert dict(smap.common) == want_common
            assert profile.commands["power_limit_pct"].scale == pytest.approx(0.1)
            for name, want in EXPECTED.items():
                reading = result[name]
                assert reading.missing_reason is None, (name, reading)
                if isinstance(want, str):
                    assert reading.value == want
                else:
                    assert isinstance(reading.value, int | float)
                    assert math.isclose(reading.value, want, rel_tol=1e-9), (name, reading.value, want)

        run(main())
    finally:
        server.stop()
