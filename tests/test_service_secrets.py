"""Secrets stay secret: a live ENTSO-E source whose requests carry the API key fails, and the key
appears nowhere anyone can read: not in the alarms (`GET /alarms`, the store), the status
(`GET /status`), or the log the service writes; nor do passwords in URLs."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from ems.config import load_site
from ems.redact import redact
from ems.runtime.logs import configure_logging
from ems.signals.http import get
from ems.signals.series import SignalError
from ems.store import Store
from tests.http_provider import Provider, Request
from tests.site_files import site_on_free_ports
from tests.test_service import _free_port, run, until

KEY = "entsoe-key-5f0c9a1e7b2d"


def test_a_failing_source_never_shows_its_key(tmp_path: Path, provider: Provider,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_ENTSOE_KEY", KEY)
    monkeypatch.setenv("EMS_API_TOKEN", "a-token-of-24-characters")

    def refused(req: Request) -> tuple[int, bytes]:
        return 401, b"<html>Unauthorized</html>"

    provider.routes["/entsoe"] = refused
    path, _ = site_on_free_ports(tmp_path)
    text = path.read_text(encoding="utf-8")
    tou = text[text.index("[grid.tariff]"):text.index("[grid.export_tariff]")]
    source = (f'provider = "entsoe", area = "DE_LU", api_key_env = "TEST_ENTSOE_KEY", '
              f'base_url = "{provider.url}/entsoe"')
    text = text.replace(tou, f'''[grid.tariff]
kind = "dynamic"
exchange_rate = 7.8
source = {{ {source} }}

''')
    text = text.replace('name = "guangdong_factory"\n',
                        f'name = "guangdong_factory"\nstate_dir = "{tmp_path / "state"}"\n')
    path.write_text(text, encoding="utf-8")
    loaded = load_site(str(path), ["service.signals_every_s=120"])
    store = Store.at_path(tmp_path / "ems.sqlite")
    port = _free_port()
    seen: dict[str, Any] = {}
    log = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setattr(sys, "stderr", log)
    configure_logging("text", verbose=True)  # the handler `ems run` logs through

    async def scenario(service: Any, sim: Any) -> None:
        await until(service, lambda: "signal_stale" in set(store.alarms()["code"]), "a stale alarm")
        await until(service, lambda: service.signals.fetched >= 2, "a second fetch")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5.0) as client:
            seen["alarms"] = (await client.get("/alarms")).text
            seen["status"] = (await client.get("/status")).text

    try:
        run(loaded, store, 60.0, scenario, api_port=port)
    finally:
        root.handlers[:], root.level = handlers, level
    assert any(r["path"] == "/entsoe" and r["query"].get("securityToken") == KEY
               for r in provider.requests)  # the key was sent
    assert "signal_stale" in seen["alarms"] and "entsoe" in seen["alarms"]
    assert "securityToken=***" in seen["alarms"]  # the URL is still there to diagnose
    written = log.getvalue()
    assert "signal_stale" in written
    for where, what in (("GET /alarms", seen["alarms"]), ("GET /status", seen["status"]),
                        ("the log", written), ("the store", store.alarms().to_json())):
        assert KEY not in what, where


def test_passwords_and_keys_in_urls_are_masked() -> None:
    assert redact("GET https://h/api?securityToken=abc&documentType=A44: HTTP 401") == \
        "GET https://h/api?securityToken=***&documentType=A44: HTTP 401"
    for url, secret in (("https://h/x?api_key=k1k1k1&z=1", "k1k1k1"), ("https://h/x?apikey=k2k2", "k2k2"),
                        ("https://h/x?a=1&token=t0k3n", "t0k3n"), ("https://h/x?Password=pw-1", "pw-1"),
                        ("postgresql+psycopg://ems:db-pass@db/ems", "db-pass"),
                        ("https://user:u-pass@h/x", "u-pass"), ("Authorization: Bearer abc.def", "abc.def")):
        assert secret not in redact(f"failed: {url} (retrying)"), url
    assert redact("GET https://h/x?signal_type=co2_moer&region=CAISO") == \
        "GET https://h/x?signal_type=co2_moer&region=CAISO"  # nothing secret: untouched


def test_a_fetch_error_masks_a_password_however_the_error_quotes_it(provider: Provider) -> None:
    provider.routes["/x"] = lambda req: (403, b"")
    with pytest.raises(SignalError) as err:
        get(f"{provider.url}/x?apikey=qq-key-31337", retries=0)
    assert "qq-key-31337" not in str(err.value) and "apikey=***" in str(err.value)
    host = provider.url.removeprefix("http://")
    with pytest.raises(SignalError) as err:
        get(f"http://ems:pw-in-url-2718@{host}/x", retries=0)
    assert "pw-in-url-2718" not in str(err.value)


def test_the_json_log_masks_secrets_in_its_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    out = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setattr(sys, "stderr", out)
    try:
        configure_logging("json", verbose=True)
        logging.getLogger("ems.service").warning(
            "plan failed: %s", "GET https://h/api?securityToken=tok-998877: HTTP 401",
            extra={"event": "plan_failed", "error": "GET https://h/api?securityToken=tok-998877"})
    finally:
        root.handlers[:], root.level = handlers, level
    line = json.loads(out.getvalue())
    assert "tok-998877" not in out.getvalue()
    assert line["error"] == "GET https://h/api?securityToken=***" and line["event"] == "plan_failed"
