"""A service that dies (kill -9) leaves the electrolyser safe: the service armed the Enapter
heartbeat, so the stack halts once no command has come for the heartbeat's timeout.

The site's devices are served by `ems sim` in a process of its own (so they outlive the killed
service), the service is `ems run` against them, and the registers are read afterwards with
pyModbusTCP, a Modbus client the project does not use itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pyModbusTCP.client import ModbusClient

from tests.site_files import site_on_free_ports

ROOT = Path(__file__).resolve().parents[1]
EMS = str(Path(sys.executable).parent / "ems")
HEARTBEAT_S = 3.0
STATE_REGISTER, HEARTBEAT_REGISTER = 1200, 4600  # Enapter: input state, holding heartbeat (uint32)
HALTED = 0


def _electrolyser(port: int) -> tuple[int | None, int | None]:
    """The electrolyser's state code and heartbeat timeout, or None where the read failed."""
    client = ModbusClient(host="127.0.0.1", port=port, unit_id=1, timeout=2.0, auto_open=True)
    try:
        state = client.read_input_registers(STATE_REGISTER, 1)
        heartbeat = client.read_holding_registers(HEARTBEAT_REGISTER, 2)
    finally:
        client.close()
    return (state[0] if state else None,
            (heartbeat[0] << 16 | heartbeat[1]) if heartbeat else None)


def _wait(condition: object, what: str, procs: list[subprocess.Popen[str]], within_s: float = 120.0) -> None:
    """Poll ``condition`` until it holds; a guard against a hang, not a timing check."""
    deadline = time.monotonic() + within_s
    while not condition():  # type: ignore[operator]
        for p in procs:
            assert p.poll() is None, f"{p.args!r} ended early: {p.stderr.read() if p.stderr else ''}"
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_kill_9_leaves_the_electrolyser_halted_by_its_heartbeat(tmp_path: Path) -> None:
    config, ports = site_on_free_ports(tmp_path)
    pem_port = ports[15028]
    text = config.read_text(encoding="utf-8")
    # a short heartbeat, so the test waits seconds, not the default minute
    armed = f"port = {pem_port}\nwatchdog_s = {HEARTBEAT_S}\n"
    config.write_text(text.replace(f"port = {pem_port}\n", armed), encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # the tank is below its restart level at the start: the rules run the electrolyser
    sim = subprocess.Popen([EMS, "sim", str(config), "--start", "2025-07-15T02:00", "--period", "0.2"],
                           cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    service: subprocess.Popen[str] | None = None
    try:
        _wait(lambda: _electrolyser(pem_port)[0] is not None, "the simulator did not come up", [sim])
        assert _electrolyser(pem_port) == (HALTED, 0)  # never started, heartbeat off
        service = subprocess.Popen(
            [EMS, "run", str(config), "--store", f"sqlite:///{tmp_path / 'ems.sqlite'}", "--api-port", "0"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _wait(lambda: _electrolyser(pem_port)[0] not in (None, HALTED),
              "the service did not start the electrolyser", [sim, service])
        assert _electrolyser(pem_port)[1] == HEARTBEAT_S  # armed by the service
        # fed by the service: still running well past the heartbeat's timeout
        fed_until = time.monotonic() + 2 * HEARTBEAT_S
        _wait(lambda: time.monotonic() > fed_until, "", [sim, service])
        assert _electrolyser(pem_port)[0] != HALTED
        service.send_signal(signal.SIGKILL)
        service.wait()
        _wait(lambda: _electrolyser(pem_port)[0] == HALTED,
              "the electrolyser kept running after the service died", [sim], within_s=60.0)
    finally:
        for p in (service, sim):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
