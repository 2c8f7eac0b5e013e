"""`ems device trace`: every request to the device and its reply (or error) with timing, against
an independent pyModbusTCP server."""

from __future__ import annotations

import struct
from pathlib import Path

from pyModbusTCP.server import DataBank
from typer.testing import CliRunner

from drivers.modbus.transport import TraceEvent
from ems.cli.device_trace import trace_line
from ems.cli.main import app
from tests.drivers.support import free_port, pymodbustcp_server
from tests.site_files import site_on_free_ports

runner = CliRunner()


def test_trace_prints_each_request_and_reply(tmp_path: Path) -> None:
    config, _ = site_on_free_ports(tmp_path)
    bank = DataBank()
    bank.set_input_registers(0, list(struct.unpack(">HH", struct.pack(">f", 230.5))))  # SDM630 V L1
    with pymodbustcp_server(bank) as server:
        result = runner.invoke(app, ["device", "trace", str(config), "grid", "--seconds", "0.3",
                                     "--set", f"grid.device.port={server.port}"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"grid: eastron_sdm630 at 127.0.0.1:{server.port} unit 1")
    reads = [line for line in lines if "read input 0+" in line]
    assert reads, result.output
    assert "registers: 4366 8000" in reads[0]  # 230.5 V as float32, high word first
    assert lines[-1].endswith(" requests") and int(lines[-1].split()[0]) >= 1


def test_trace_shows_errors_with_their_kind(tmp_path: Path) -> None:
    config, _ = site_on_free_ports(tmp_path)
    result = runner.invoke(app, ["device", "trace", str(config), "grid", "--seconds", "0.2",
                                 "--timeout", "0.2", "--set", f"grid.device.port={free_port()}"])
    assert result.exit_code == 0, result.output
    assert "-> connect: cannot connect to 127.0.0.1:" in result.output


def test_trace_line_format() -> None:
    ok = TraceEvent("read input 0+10 unit 1", 1, 101.5, 0.0021, registers=tuple(range(10)))
    assert trace_line(ok, 100.0) == (
        "+   1.500 s       2.1 ms  read input 0+10 unit 1  -> 10 registers: "
        "0000 0001 0002 0003 0004 0005 0006 0007 … (+2)")
    failed = TraceEvent("read input 0+10 unit 7", 7, 100.0, 1.0, error="timeout, no response within 1 s",
                        kind="timeout")
    assert trace_line(failed, 100.0).endswith("-> timeout: timeout, no response within 1 s")
