"""`ems device scan` against a live simulator (served from a background thread) and its errors."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from typer.testing import CliRunner

from drivers.sim.register_server import RegisterServer
from drivers.sunspec import install_image, standard_layout, standard_profile
from ems.cli.device_scan import parse_target
from ems.cli.main import app
from tests.drivers.support import free_port

runner = CliRunner()


@contextmanager
def simulator(name: str, base: int = 40000, common_length: int = 66) -> Iterator[int]:
    """A SunSpec simulator on its own event loop in a background thread; yields its port."""
    loop = asyncio.new_event_loop()
    server = RegisterServer(standard_profile(name, base, common_length))
    install_image(server, name, base, common_length)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(5)
        yield server.port
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_scan_prints_models_and_common_model() -> None:
    layout = standard_layout("sunspec_inverter", 0, 65)
    with simulator("sunspec_inverter", 0, 65) as port:
        result = runner.invoke(app, ["device", "scan", f"127.0.0.1:{port}"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "base address 0" in out
    assert "EMS Simulator" in out and "sunspec_inverter" in out and "SIM-0001" in out
    for m in layout.models:
        assert f"│ {m.id} " in out.replace("┃", "│")
        assert str(m.address) in out and m.name in out


def test_scan_json() -> None:
    layout = standard_layout("sunspec_battery")
    with simulator("sunspec_battery") as port:
        result = runner.invoke(app, ["device", "scan", f"127.0.0.1:{port}", "--unit", "1", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["base"] == 40000
    want = ("EMS Simulator", "sunspec_battery", "SIM-0001")
    assert (doc["manufacturer"], doc["model"], doc["serial"]) == want
    assert doc["models"] == [
        {"id": m.id, "name": m.name, "address": m.address, "length": m.length} for m in layout.models
    ]


def test_scan_dead_port_is_one_line_and_exit_2() -> None:
    port = free_port()
    result = runner.invoke(app, ["device", "scan", f"127.0.0.1:{port}", "--timeout", "0.5"])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    where = f"127.0.0.1:{port}"
    assert lines == [f"error: {where} unit 1: SunSpec probe at 40000: cannot connect to {where}"]
    assert "Traceback" not in result.output


def test_scan_without_marker_is_one_line_and_exit_2() -> None:
    with simulator("sunspec_meter") as port:
        # wrong unit: the simulator answers "gateway target failed" (exception 11) at every base
        result = runner.invoke(app, ["device", "scan", f"127.0.0.1:{port}", "--unit", "7"])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: 127.0.0.1:{port} unit 7: no SunSpec marker 'SunS'")


@pytest.mark.parametrize(
    ("target", "want"),
    [
        ("host", ("host", 502)),
        ("host:1502", ("host", 1502)),
        ("[::1]:1502", ("::1", 1502)),
        ("[::1]", ("::1", 502)),
    ],
)
def test_parse_target(target: str, want: tuple[str, int]) -> None:
    assert parse_target(target) == want


@pytest.mark.parametrize("target", ["host:0", "host:x", ":502", "[::1"])
def test_parse_target_rejects(target: str) -> None:
    with pytest.raises(ValueError):
        parse_target(target)
