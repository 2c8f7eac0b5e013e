"""The bundled Guangdong site as a config file of its own, with its device ports moved to free
ones, so tests never depend on the site's fixed ports (15020..15030) being free."""

from __future__ import annotations

import re
from pathlib import Path

from tests.drivers.support import free_port

SITES = Path(__file__).resolve().parents[1] / "site_configs"


def site_on_free_ports(tmp_path: Path) -> tuple[Path, dict[int, int]]:
    """The Guangdong site with absolute data paths and its device ports (15020..15030) moved;
    returns the config's path and old port -> new port."""
    text = (SITES / "guangdong_factory.toml").read_text(encoding="utf-8")
    text = text.replace('"data/', f'"{SITES}/data/')
    ports: dict[int, int] = {}
    for old in range(15020, 15031):  # eleven distinct ports (the OS may hand one out twice)
        port = free_port()
        while port in ports.values():
            port = free_port()
        ports[old] = port
    text = re.sub(r"^port = (150\d\d)$", lambda m: f"port = {ports[int(m.group(1))]}", text, flags=re.M)
    path = tmp_path / "guangdong_factory.toml"
    path.write_text(text, encoding="utf-8")
    return path, ports
