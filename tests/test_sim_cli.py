"""`ems sim` and `ems device read` end to end: a site served over TCP from a real process, read
back through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner, Result

from ems.cli.main import app
from tests.site_files import site_on_free_ports

SITES = Path(__file__).resolve().parents[1] / "site_configs"
runner = CliRunner()


def read(*args: str) -> Result:
    return runner.invoke(app, ["device", "read", *args])


def test_sim_serves_the_site_and_device_read_reads_it(tmp_path: Path) -> None:
    path, ports = site_on_free_ports(tmp_path)
    # 19:00 local on a weekday: the vans (arriving 18:30) are plugged in.
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "ems.cli.sim_cmd", str(path), "--speed", "10", "--duration", "60",
         "--start", "2025-06-02T19:00", "--period", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        table: list[str] = []
        for line in proc.stdout:  # the table is printed once every server listens
            table.append(line.rstrip("\n"))
            if line.startswith("simulating from"):
                break
        if not table:
            proc.wait(timeout=10)
            raise AssertionError(f"ems sim printed nothing: {proc.stderr.read() if proc.stderr else ''}")
        assert table[0].split() == ["device", "profile", "address", "unit"], table
        rows = {line.split()[0]: line.split() for line in table[1:-1] if not line.startswith("skipped")}
        assert rows["fleet_1"][1:] == ["alfen_ng9xx", f"127.0.0.1:{ports[15022]}", "1"]
        assert rows["grid"][1] == "eastron_sdm630" and rows["pem"][1] == "enapter_el"

        res = read(str(path), "fleet_1", "--json")
        assert res.exit_code == 0, res.output
        doc = json.loads(res.stdout)
        cap = doc["capability"]
        assert cap["state"]["value"] == "C2" and cap["plugged"]["value"] is True
        # Nobody wrote a current: the charger applies its safe current (6 A x 3 x 230 V).
        assert cap["applied_current_a"]["value"] == 6.0
        assert abs(cap["power_kw"]["value"] - 4.14) < 1e-3
        assert doc["points"]["safe_current_a"]["value"] == 6.0

        res = read(str(path), "grid")
        assert res.exit_code == 0, res.output
        assert "capability (meter)" in res.stdout and "power_net_kw" in res.stdout

        # A SunSpec device is read through discovery of its model chain.
        res = read(str(path), "bess", "--json")
        assert res.exit_code == 0, res.output
        bess = json.loads(res.stdout)
        assert bess["profile"] == "sunspec_battery"
        assert 0.0 <= bess["capability"]["soc_pct"]["value"] <= 100.0
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped after" in out and "Traceback" not in err


def test_device_read_of_a_silent_device_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path, ports = site_on_free_ports(tmp_path)  # nothing listens on these ports
    res = read(str(path), "grid", "--timeout", "0.5")
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"error: device 'grid' at 127.0.0.1:{ports[15030]} unit 1 (eastron_sdm630)")
    assert "does not answer" in lines[0] and "Traceback" not in res.output


def test_device_read_of_an_unknown_device_names_the_known_ones() -> None:
    res = read("guangdong_factory", "nope")
    assert res.exit_code == 2
    assert "device 'nope'" in res.stderr and "fleet_1" in res.stderr
