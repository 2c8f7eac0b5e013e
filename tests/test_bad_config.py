"""Broken site configs: `ems config check` refuses every one that `ems run` would fail on, with
exit code 2 and one line per problem naming the field and the value, never a traceback; and
`ems run` on the same file stops at start with the same lines.

Each broken config is the bundled Guangdong site's TOML with one edit.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from drivers.capabilities import MAPPINGS
from ems.cli.main import app
from ems.config import load_site
from ems.site.device_check import device_problems
from ems.site.modbus import DeviceLinks
from tests.drivers.support import free_port
from tests.site_files import site_on_free_ports

SITES = Path(__file__).resolve().parents[1] / "site_configs"
DATA = SITES / "data" / "guangdong_factory"
runner = CliRunner()


def check(path: Path, *options: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, ["config", "check", str(path), *options], env=env)


def sub(old: str, new: str, count: int = 1) -> Callable[[str], str]:
    """An edit of the TOML text that must apply (a test whose edit misses would prove nothing)."""
    def edit(text: str) -> str:
        assert text.count(old) >= count, f"test setup: {old!r} not in the config text"
        return text.replace(old, new, count)
    return edit


def add(extra: str) -> Callable[[str], str]:
    return lambda text: text + "\n" + extra + "\n"


# (id, edit of the TOML text, field named in the message, value named in the message)
BROKEN: list[tuple[str, Callable[[str], str], str, str]] = [
    # non-finite numbers, anywhere
    ("nan-export-price", sub("price_per_kwh = 0.453", "price_per_kwh = nan"),
     "grid.export_tariff.price_per_kwh", "nan"),
    ("inf-import-limit", sub("import_limit_kw = 2500.0", "import_limit_kw = inf"),
     "grid.import_limit_kw", "inf"),
    ("minus-inf-tou-price", sub("valley = 0.266", "valley = -inf"), "grid.tariff.prices.valley", "-inf"),
    ("nan-efficiency", sub("charge_efficiency = 0.96", "charge_efficiency = nan"),
     "battery[0].charge_efficiency", "nan"),
    ("inf-tank", sub("capacity_kg = 250.0", "capacity_kg = inf"), "hydrogen_tank[0].capacity_kg", "inf"),
    ("nan-startup-cost", sub("startup_cost = 15.0", "startup_cost = nan"),
     "electrolyser[0].startup_cost", "nan"),
    ("nan-latitude", sub("latitude = 23.13", "latitude = nan"), "site.latitude", "nan"),
    ("inf-poll-interval", add("[service]\npoll_every_s = inf"), "service.poll_every_s", "inf"),
    ("nan-session-energy", sub("energy_kwh = 45.0", "energy_kwh = nan"),
     "ev_sessions.schedule[0].energy_kwh", "nan"),
    # magnitudes that make every plan fail
    ("huge-capacity", sub("capacity_kwh = 2000.0", "capacity_kwh = 1e308"),
     "battery[0].capacity_kwh", "1e+308"),
    ("huge-pv", sub("kwp = 1000.0", "kwp = 1e12"), "pv[0].kwp", "1000000000000.0"),
    ("huge-price", sub("peak = 1.190", "peak = 1e300"), "grid.tariff.prices.peak", "1e+300"),
    ("huge-offtake", sub("kg_per_hour = 3.0", "kg_per_hour = 1e300"),
     "hydrogen_offtake[0].schedule[0].kg_per_hour", "1e+300"),
    ("huge-retention", add("[store]\ntelemetry_retention_days = 1e308"),
     "store.telemetry_retention_days", "1e+308"),
    # names that become paths
    ("site-name-escapes", sub('name = "guangdong_factory"', 'name = "../x"'), "site.name", "'../x'"),
    ("site-name-slash", sub('name = "guangdong_factory"', 'name = "a/b"'), "site.name", "'a/b'"),
    ("asset-name-slash", sub('name = "bess"', 'name = "bess/1"'), "battery[0].name", "'bess/1'"),
    ("empty-state-dir", sub('data_end = "2025-12-31"', 'data_end = "2025-12-31"\nstate_dir = ""'),
     "site.state_dir", "''"),
    # dates and paths
    ("month-13", sub('data_start = "2025-01-01"', 'data_start = "2025-13-01"'),
     "site.data_start", "'2025-13-01'"),
    ("end-before-start", sub('data_end = "2025-12-31"', 'data_end = "2024-12-31"'),
     "site.data_end", "'2024-12-31'"),
    ("empty-weather-file", sub(f'weather_file = "{DATA}/weather.csv"', 'weather_file = ""'),
     "pv[0].weather_file", "''"),
    ("data-path-is-a-directory", sub(f'file = "{DATA}/load_kw.csv"', f'file = "{DATA}"'),
     "load[0].file", f"'{DATA}'"),
    ("missing-carbon-file", sub(f'file = "{DATA}/carbon.csv"', f'file = "{DATA}/nope.csv"'),
     "grid.carbon[0].file", "nope.csv"),
    # cross-field checks
    ("ev-min-above-max", sub("min_current_a = 6.0", "min_current_a = 40.0"),
     "ev_charger[0].min_current_a", "40.0"),
    ("v2g-without-discharge", sub("v2g = false", "v2g = true"), "ev_charger[0].max_discharge_kw", "0.0"),
    # device tables
    ("unknown-profile", sub('profile = "enapter_el"', 'profile = "nosuch"'),
     "electrolyser[0].device.profile", "'nosuch'"),
    ("profile-of-another-kind", sub('profile = "sunspec_battery"', 'profile = "eastron_sdm630"'),
     "battery[0].device.profile", "'eastron_sdm630'"),
    ("battery-profile-without-setpoint", sub('profile = "sunspec_battery"', 'profile = "victron_gx"'),
     "battery[0].device.profile", "'victron_gx'"),
    ("two-devices-one-address", sub("port = 15023", "port = 15022"),
     "ev_charger[1].device.unit_id", "already 'fleet_1'"),
    ("unit-id-reserved", sub("port = 15022\nunit_id = 1", "port = 15022\nunit_id = 250"),
     "ev_charger[0].device.unit_id", "250"),
    ("port-out-of-range", sub("port = 15030", "port = 70000"), "grid.device.port", "70000"),
    ("bad-host", sub('host = "127.0.0.1"', 'host = "meter one"'), "grid.device.host", "'meter one'"),
    # the store and the service
    ("store-url-not-a-url", add('[store]\nurl = "not a url"'), "store.url", "'not a url'"),
    ("store-url-no-driver", add('[store]\nurl = "nosuchdb://ems:secret@db/ems"'), "store.url",
     "'nosuchdb://ems:***@db/ems'"),
    ("bad-api-host", add('[service]\napi_host = "local host"'), "service.api_host", "'local host'"),
    # the file itself
    ("not-utf-8", lambda t: t.replace("# Reference site 1", "# R\udce9ference site 1"), "line 1", "0xe9"),
    ("not-toml", add("[battery"), "not valid TOML", "line"),
]


def broken_site(tmp_path: Path, edit: Callable[[str], str]) -> Path:
    """The bundled Guangdong site with absolute data paths, edited, then its device ports
    (15020..15030) moved to free ones (a run that were to start would not clash with another)."""
    text = (SITES / "guangdong_factory.toml").read_text(encoding="utf-8").replace('"data/', f'"{SITES}/data/')
    text = edit(text)
    ports: dict[str, int] = {}
    for old in range(15020, 15031):
        port = free_port()
        while port in ports.values():
            port = free_port()
        ports[str(old)] = port
    text = re.sub(r"^port = (150[23]\d)$", lambda m: f"port = {ports.get(m.group(1), m.group(1))}", text,
                  flags=re.M)
    path = tmp_path / "site.toml"
    path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    return path


def test_the_unedited_site_passes(tmp_path: Path) -> None:
    # the edits below start from this file: it must itself be accepted, or they prove nothing
    res = check(broken_site(tmp_path, lambda t: t), "--simulate")
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(("edit", "field", "value"), [case[1:] for case in BROKEN],
                         ids=[case[0] for case in BROKEN])
def test_config_check_refuses_a_broken_config(tmp_path: Path, edit: Callable[[str], str],
                                              field: str, value: str) -> None:
    path = broken_site(tmp_path, edit)
    res = check(path)
    assert res.exit_code == 2, res.output
    assert res.stdout == ""
    assert "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert lines and all(line.startswith(f"error: {path}: ") for line in lines), res.stderr
    assert any(field in line and value in line for line in lines), res.stderr


def test_every_problem_is_listed_one_line_each(tmp_path: Path) -> None:
    edits = [sub('profile = "enapter_el"', 'profile = "nosuch"'),
             sub('profile = "sunspec_battery"', 'profile = "eastron_sdm630"'),
             sub("port = 15023", "port = 15022"),
             add('[store]\nurl = "not a url"')]
    path = broken_site(tmp_path, lambda t: _all(t, edits))
    res = check(path)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert [line.split(": ")[2].split(" = ")[0] for line in lines] == [
        "store.url", "battery[0].device.profile", "electrolyser[0].device.profile",
        "ev_charger[1].device.unit_id"], res.stderr


def test_several_bad_numbers_are_each_named(tmp_path: Path) -> None:
    path = broken_site(tmp_path, lambda t: _all(t, [
        sub("price_per_kwh = 0.453", "price_per_kwh = nan"),
        sub("capacity_kwh = 2000.0", "capacity_kwh = inf"),
        sub("kwp = 1000.0", "kwp = 1e9")]))
    lines = check(path).stderr.strip().splitlines()
    assert len(lines) == 3
    assert {line.split(": ")[2] for line in lines} == {
        "grid.export_tariff.price_per_kwh = nan", "battery[0].capacity_kwh = inf", "pv[0].kwp = 1000000000.0"}


def _all(text: str, edits: list[Callable[[str], str]]) -> str:
    for edit in edits:
        text = edit(text)
    return text


def test_a_store_url_from_the_environment_is_checked_and_its_password_masked(tmp_path: Path) -> None:
    path = broken_site(tmp_path, lambda t: t)
    res = check(path, "--no-data", env={"EMS_STORE_URL": "nosuchdb://ems:hunter2@db/ems"})
    assert res.exit_code == 2
    assert res.stderr.strip() == (f"error: {path}: $EMS_STORE_URL (overrides store.url) = "
                                  "'nosuchdb://ems:***@db/ems': no database driver 'nosuchdb' is installed "
                                  "(e.g. sqlite:///state/ems.sqlite or postgresql+psycopg://ems@db/ems)")
    assert "hunter2" not in res.output


def test_a_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("not a directory")
    path = broken_site(tmp_path, sub('data_end = "2025-12-31"',
                                     'data_end = "2025-12-31"\nstate_dir = "taken/x"'))
    res = check(path, "--no-data", env={"EMS_STORE_URL": ""})
    assert res.exit_code == 2
    assert res.stderr.strip() == (f"error: {path}: site.state_dir = 'taken/x': the store's directory "
                                  f"{tmp_path}/taken/x cannot be made: {tmp_path}/taken is not a directory")


def test_a_data_file_with_an_infinite_value_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "load.csv"
    bad.write_text("timestamp_utc,load_kw\n2024-12-31T16:00:00Z,100\n2024-12-31T17:00:00Z,inf\n")
    path = broken_site(tmp_path, sub(f'"{DATA}/load_kw.csv"', f'"{bad}"'))
    res = check(path)
    assert res.exit_code == 2
    assert "'load_kw' at 2024-12-31T17:00:00+00:00 = inf: not a finite number" in res.stderr


def test_simulated_devices_need_a_port_each(tmp_path: Path) -> None:
    # two units behind one gateway are a real site's layout, but the simulators serve one unit per port
    path = broken_site(tmp_path, sub("port = 15023\nunit_id = 1", "port = 15022\nunit_id = 2"))
    assert check(path, "--no-data").exit_code == 0
    res = check(path, "--no-data", "--simulate")
    assert res.exit_code == 2
    assert "ev_charger[1].device.port" in res.stderr and "needs a port of its own" in res.stderr


def test_a_profile_that_does_not_read_what_the_controller_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_site("guangdong_factory").config
    assert device_problems(cfg) == []
    without_power = {k: v for k, v in MAPPINGS["eastron_sdm630"].items() if k != "power_net_kw"}
    monkeypatch.setitem(MAPPINGS, "eastron_sdm630", without_power)
    assert device_problems(cfg) == [
        f"{where}.device.profile = 'eastron_sdm630': does not read power_net_kw, which the controller "
        f"needs of {section} {name!r}"
        for where, section, name in (("grid", "grid", "grid"), ("load[0]", "load", "factory"))]


RUN_CASES = ["nan-export-price", "site-name-escapes", "month-13", "unknown-profile", "not-utf-8",
             "two-devices-one-address", "store-url-not-a-url"]


@pytest.mark.parametrize("case", RUN_CASES)
def test_ems_run_stops_at_start_with_the_same_lines(tmp_path: Path, case: str) -> None:
    _, edit, field, _ = next(c for c in BROKEN if c[0] == case)
    path = broken_site(tmp_path, edit)
    expected = check(path).stderr
    ems = Path(sys.executable).parent / "ems"  # the installed console script, as an operator runs it
    env = {**os.environ, "EMS_STATE_DIR": str(tmp_path / "state")}
    env.pop("EMS_STORE_URL", None)
    proc = subprocess.run([str(ems), "run", str(path), "--simulate", "--duration", "5", "--api-port", "0",
                           "--quiet"], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr == expected and field in expected
    assert proc.stdout == ""  # nothing started


def test_the_device_layer_sets_aside_a_device_whose_profile_is_unknown(tmp_path: Path) -> None:
    # `ems run` refuses such a config at start; a service started another way (tests, an
    # embedding program) keeps running without that device instead of failing
    path, _ = site_on_free_ports(tmp_path)
    cfg = load_site(str(path), ["electrolyser.device.profile=nosuch"]).config

    async def start_and_stop() -> dict[str, str]:
        links = DeviceLinks(cfg, timeout_s=0.2)
        await links.start()
        await links.stop()
        return links.unresolved

    unresolved = asyncio.run(start_and_stop())
    assert "'nosuch'" in unresolved["pem"]


def test_a_store_that_cannot_be_opened_stops_ems_run_without_showing_its_password(tmp_path: Path) -> None:
    # the URL is well formed and its driver installed (config check accepts it); nothing listens
    url = f"postgresql+psycopg://ems:hunter2@127.0.0.1:{free_port()}/ems"
    path = broken_site(tmp_path, lambda t: t)
    ems = Path(sys.executable).parent / "ems"
    proc = subprocess.run([str(ems), "run", str(path), "--store", url, "--duration", "1", "--api-port", "0"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: store postgresql+psycopg://") and "***@127.0.0.1:" in proc.stderr
    assert "cannot open" in proc.stderr and "hunter2" not in proc.stderr + proc.stdout
