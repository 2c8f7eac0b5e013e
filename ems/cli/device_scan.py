"""`ems device scan HOST[:PORT]`: find a Modbus TCP device's SunSpec models."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import typer

from ems.cli.common import EXIT_INPUT, out_console
from ems.cli.device_cmd import app

DEFAULT_PORT = 502


def parse_target(target: str) -> tuple[str, int]:
    """``HOST`` or ``HOST:PORT`` (IPv6 as ``[addr]:port``); a bad port raises ValueError."""
    host, port = target, DEFAULT_PORT
    if target.startswith("["):
        end = target.find("]")
        if end < 0:
            raise ValueError(f"bad host {target!r}")
        host, rest = target[1:end], target[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad host {target!r}")
            port = _port(rest[1:])
    elif target.count(":") == 1:
        host, text = target.split(":")
        port = _port(text)
    if not host:
        raise ValueError(f"no host in {target!r}")
    return host, port


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"port must be 1..65535, got {text!r}")
    return int(text)


async def _scan(host: str, port: int, unit: int, timeout_s: float) -> Any:
    from drivers.modbus.transport import ModbusTcpTransport
    from drivers.sunspec.discovery import discover

    # pymodbus logs connection failures itself; the command prints its own one-line error.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    transport = ModbusTcpTransport(host, port, timeout_s=timeout_s)
    try:
        return await discover(transport, unit)
    finally:
        transport.close()


def _fail(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    raise typer.Exit(EXIT_INPUT)


@app.command("scan")
def scan(
    target: str = typer.Argument(..., metavar="HOST[:PORT]", help="Modbus TCP device (default port 502)."),
    unit: int = typer.Option(1, "--unit", min=0, max=255, help="Modbus unit id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    timeout: float = typer.Option(2.0, "--timeout", min=0.1, help="Seconds per request."),
) -> None:
    """Find the SunSpec base address and list the device's models."""
    from drivers.modbus.transport import TransportError
    from drivers.sunspec.discovery import SunSpecError

    try:
        host, port = parse_target(target)
    except ValueError as exc:
        _fail(str(exc))
        return
    try:
        smap = asyncio.run(_scan(host, port, unit, timeout))
    except (TransportError, SunSpecError) as exc:
        _fail(f"{host}:{port} unit {unit}: {exc}")
        return
    models = [
        {"id": m.id, "name": m.name, "address": m.address, "length": m.length} for m in smap.models
    ]
    common = {
        "manufacturer": smap.common.get("Mn"),
        "model": smap.common.get("Md"),
        "serial": smap.common.get("SN"),
    }
    if as_json:
        doc = {"host": host, "port": port, "unit": unit, "base": smap.base, **common, "models": models}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    from rich.table import Table

    console = out_console()
    console.print(f"SunSpec device at {host}:{port} unit {unit}, base address {smap.base}")
    console.print(
        f"Manufacturer: {common['manufacturer'] or '–'}   Model: {common['model'] or '–'}   "
        f"Serial: {common['serial'] or '–'}"
    )
    table = Table("model", "name", "address", "length")
    for m in models:
        table.add_row(str(m["id"]), str(m["name"]), str(m["address"]), str(m["length"]))
    console.print(table)
