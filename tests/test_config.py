"""Site configs: the bundled sites load; bad configs and overrides give one clear line per
problem that names the field path and the bad value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel

from ems.config import ConfigError, SiteConfig, load_site
from ems.config.bounds import MAX_ENERGY_KWH, MAX_POWER_KW, MAX_PRICE_PER_KWH
from ems.config.loader import apply_override

DATA = Path(__file__).resolve().parents[1] / "site_configs" / "data"

BASE = f"""
[site]
name = "test_site"
timezone = "Asia/Shanghai"
latitude = 23.1
longitude = 113.3

[grid]
import_limit_kw = 1000.0
export_limit_kw = 0.0

[grid.tariff]
kind = "tou"
default_period = "flat"
prices = {{ flat = 0.7, peak = 1.19 }}
rules = [ {{ period = "peak", start = "10:00", end = "12:00" }} ]

[grid.carbon]
file = "{DATA / 'guangdong_factory' / 'carbon.csv'}"
column = "average_g_per_kwh"
kind = "average"

[[battery]]
name = "bess"
capacity_kwh = 2000.0
max_charge_kw = 1000.0
max_discharge_kw = 1000.0

[[load]]
name = "factory"
file = "{DATA / 'guangdong_factory' / 'load_kw.csv'}"
"""

ELECTROLYSER = """
[[electrolyser]]
name = "pem"
rated_kw = 250.0
tank = "h2_tank"

[[hydrogen_tank]]
name = "h2_tank"
capacity_kg = 250.0
"""

SECOND_BATTERY = """
[[battery]]
name = "b2"
capacity_kwh = 500.0
max_charge_kw = 250.0
max_discharge_kw = 250.0
"""


def edit(text: str, old: str, new: str) -> str:
    assert old in text, f"test setup: {old!r} not in the config text"
    return text.replace(old, new, 1)


def write(tmp_path: Path, text: str, name: str = "site.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def errors(path: Path, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_site(str(path), overrides)
    lines = info.value.lines
    assert str(info.value) == "\n".join(lines)
    return lines


# --- bundled sites -----------------------------------------------------------------------


def test_bundled_guangdong_loads() -> None:
    site = load_site("guangdong_factory")
    cfg = site.config
    assert cfg.site.timezone == "Asia/Shanghai"
    assert [b.name for b in cfg.battery] == ["bess"]
    assert cfg.battery[0].capacity_kwh == 2000.0
    assert len(cfg.ev_charger) == 6
    # 32 A x 3 phases x 230 V
    assert cfg.ev_charger[0].max_power_kw == pytest.approx(22.08)
    assert cfg.electrolyser[0].tank == "h2_tank"
    # relative data paths resolve against the config file's directory
    assert site.resolve(cfg.load[0].file).exists()
    assert site.resolve(cfg.load[0].file).parent.name == "guangdong_factory"


def test_bundled_caltech_loads() -> None:
    site = load_site("caltech_campus")
    cfg = site.config
    assert cfg.site.timezone == "America/Los_Angeles"
    assert cfg.ev_sessions is not None and cfg.ev_sessions.kind == "file"
    assert len(cfg.ev_charger) == 54
    assert site.resolve(cfg.ev_sessions.file).exists()


def test_minimal_test_config_is_valid(tmp_path: Path) -> None:
    # the base the bad-config tests start from must itself be valid, or they prove nothing
    site = load_site(str(write(tmp_path, BASE + ELECTROLYSER)))
    assert site.config.electrolyser[0].tank == "h2_tank"


def test_unknown_site_name_lists_bundled_sites() -> None:
    with pytest.raises(ConfigError) as info:
        load_site("no_such_site")
    (line,) = info.value.lines
    assert "'no_such_site'" in line
    assert "guangdong_factory" in line and "caltech_campus" in line


# --- bad configs: one line per problem, naming field path and value ---------------------


def test_negative_capacity(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, "capacity_kwh = 2000.0", "capacity_kwh = -5.0"))
    (line,) = errors(path)
    assert line.startswith(f"{path}: ")
    assert "battery[0].capacity_kwh = -5.0" in line
    assert "greater than 0" in line


def test_unknown_field(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, "max_charge_kw = 1000.0",
                                "max_charge_kw = 1000.0\ncapacty_kwh = 3.0"))
    (line,) = errors(path)
    assert "battery[0].capacty_kwh = 3.0" in line
    assert "unknown field" in line


def test_bad_timezone(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, '"Asia/Shanghai"', '"Asia/Shangai"'))
    (line,) = errors(path)
    assert "site.timezone = 'Asia/Shangai'" in line
    assert "timezone" in line.split(":", 2)[-1]


@pytest.mark.parametrize("bad", ["10:60", "25:00", "9:00", "10h00"])
def test_bad_time_of_day(tmp_path: Path, bad: str) -> None:
    path = write(tmp_path, edit(BASE, 'start = "10:00"', f'start = "{bad}"'))
    (line,) = errors(path)
    assert f"grid.tariff.rules[0].start = '{bad}'" in line
    assert "HH:MM" in line


def test_soc_min_above_soc_max(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, "max_discharge_kw = 1000.0",
                                "max_discharge_kw = 1000.0\nsoc_min_fraction = 0.97\n"
                                "soc_max_fraction = 0.95"))
    (line,) = errors(path)
    assert "battery[0].soc_min_fraction = 0.97" in line
    assert "soc_max_fraction 0.95" in line


def test_electrolyser_tank_missing(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + edit(ELECTROLYSER, 'tank = "h2_tank"', 'tank = "h2_tnk"'))
    (line,) = errors(path)
    assert "electrolyser[0].tank = 'h2_tnk'" in line
    assert "not a hydrogen_tank" in line and "'h2_tank'" in line


def test_duplicate_asset_names(tmp_path: Path) -> None:
    # a battery and a load both called "factory": the second one is named, with the first
    path = write(tmp_path, edit(BASE, 'name = "bess"', 'name = "factory"'))
    (line,) = errors(path)
    assert "load[0].name = 'factory'" in line
    assert "battery[0]" in line


def test_duplicate_names_within_a_group(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + edit(SECOND_BATTERY, 'name = "b2"', 'name = "bess"'))
    (line,) = errors(path)
    assert "battery[1].name = 'bess'" in line


def test_tariff_period_without_price(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, "prices = { flat = 0.7, peak = 1.19 }",
                                "prices = { flat = 0.7 }"))
    (line,) = errors(path)
    assert "grid.tariff.rules[0].period = 'peak'" in line
    assert "no price" in line


def test_default_period_without_price(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, 'default_period = "flat"', 'default_period = "offpeak"'))
    (line,) = errors(path)
    assert "grid.tariff.default_period = 'offpeak'" in line


def test_missing_data_file(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, "load_kw.csv", "no_such_load.csv"))
    (line,) = errors(path)
    assert "load[0].file = " in line
    assert "no_such_load.csv" in line
    assert "not found" in line


def test_relative_data_file_resolves_against_config_dir(tmp_path: Path) -> None:
    text = edit(BASE, f'"{DATA / "guangdong_factory" / "load_kw.csv"}"', '"data/load.csv"')
    path = write(tmp_path, text)
    (line,) = errors(path)
    assert "load[0].file = 'data/load.csv'" in line
    assert str(tmp_path / "data" / "load.csv") in line
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "load.csv").write_text("timestamp_utc,load_kw\n", encoding="utf-8")
    assert load_site(str(path)).resolve("data/load.csv") == tmp_path / "data" / "load.csv"


def test_wrong_type_of_a_field_named_file(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, f'file = "{DATA / "guangdong_factory" / "load_kw.csv"}"',
                                "file = 5"))
    (line,) = errors(path)
    assert "load[0].file = 5" in line


def test_bad_tariff_kind(tmp_path: Path) -> None:
    path = write(tmp_path, edit(BASE, 'kind = "tou"', 'kind = "tuo"'))
    (line,) = errors(path)
    assert "grid.tariff.kind = 'tuo'" in line


def test_several_problems_one_line_each(tmp_path: Path) -> None:
    text = edit(BASE, "capacity_kwh = 2000.0", "capacity_kwh = -5.0")
    text = edit(text, '"Asia/Shanghai"', '"Mars/Olympus"')
    text = edit(text, 'start = "10:00"', 'start = "10:75"')
    path = write(tmp_path, text)
    lines = errors(path)
    assert len(lines) == 3, lines
    assert sum("battery[0].capacity_kwh = -5.0" in ln for ln in lines) == 1
    assert sum("site.timezone = 'Mars/Olympus'" in ln for ln in lines) == 1
    assert sum("grid.tariff.rules[0].start = '10:75'" in ln for ln in lines) == 1
    assert all(ln.startswith(f"{path}: ") and "\n" not in ln for ln in lines)


def test_several_reference_problems_one_line_each(tmp_path: Path) -> None:
    text = BASE + edit(ELECTROLYSER, 'tank = "h2_tank"', 'tank = "h2_tnk"')
    text += edit(SECOND_BATTERY, 'name = "b2"', 'name = "pem"')
    lines = errors(write(tmp_path, text))
    assert len(lines) == 2, lines
    assert any("electrolyser[0].tank = 'h2_tnk'" in ln for ln in lines)
    # the electrolyser's name is the second use (batteries are checked first)
    assert any("electrolyser[0].name = 'pem'" in ln and "battery[1]" in ln for ln in lines)


def test_two_missing_files_two_lines(tmp_path: Path) -> None:
    text = edit(BASE, "load_kw.csv", "gone_load.csv")
    text = edit(text, "carbon.csv", "gone_carbon.csv")
    lines = errors(write(tmp_path, text))
    assert len(lines) == 2, lines
    assert any("grid.carbon.file = " in ln and "gone_carbon.csv" in ln for ln in lines)
    assert any("load[0].file = " in ln and "gone_load.csv" in ln for ln in lines)


def test_invalid_toml(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "\n[site\n")
    (line,) = errors(path)
    assert str(path) in line and "TOML" in line


# --- numbers finite and bounded, names safe for paths --------------------------------------


def _models(annotation: object) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        for field in annotation.model_fields.values():
            yield from _models(field.annotation)
    for arg in get_args(annotation):
        yield from _models(arg)


def test_every_config_model_refuses_non_finite_numbers() -> None:
    # one mechanism for every model, including ones added later: their shared pydantic config
    models = set(_models(SiteConfig))
    assert len(models) > 30
    assert [m.__name__ for m in models if m.model_config.get("allow_inf_nan") is not False] == []


@pytest.mark.parametrize(("old", "new", "where"), [
    ("capacity_kwh = 2000.0", "capacity_kwh = nan", "battery[0].capacity_kwh = nan"),
    ("import_limit_kw = 1000.0", "import_limit_kw = inf", "grid.import_limit_kw = inf"),
    ("flat = 0.7", "flat = -inf", "grid.tariff.prices.flat = -inf"),
    ("max_charge_kw = 1000.0", "max_charge_kw = +inf", "battery[0].max_charge_kw = inf"),
])
def test_non_finite_numbers_are_refused(tmp_path: Path, old: str, new: str, where: str) -> None:
    (line,) = errors(write(tmp_path, edit(BASE, old, new)))
    assert f"{where}: Input should be a finite number" in line


def test_documented_maxima_hold_and_one_past_them_is_refused(tmp_path: Path) -> None:
    at_max = edit(BASE, "capacity_kwh = 2000.0", f"capacity_kwh = {MAX_ENERGY_KWH}")
    at_max = edit(at_max, "max_charge_kw = 1000.0", f"max_charge_kw = {MAX_POWER_KW}")
    at_max = edit(at_max, "flat = 0.7", f"flat = {-MAX_PRICE_PER_KWH}")
    assert load_site(str(write(tmp_path, at_max))).config.battery[0].capacity_kwh == MAX_ENERGY_KWH
    past = edit(BASE, "capacity_kwh = 2000.0", "capacity_kwh = 1e308")
    past = edit(past, "max_charge_kw = 1000.0", f"max_charge_kw = {MAX_POWER_KW * 10}")
    past = edit(past, "flat = 0.7", "flat = 1e9")
    lines = errors(write(tmp_path, past, "past.toml"))
    assert sorted(ln.split(": ", 2)[1] for ln in lines) == [
        "battery[0].capacity_kwh = 1e+308", "battery[0].max_charge_kw = 10000000.0",
        "grid.tariff.prices.flat = 1000000000.0"]


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".hidden", "", "x" * 65, "a b", "c:\\x", "x..y"])
def test_a_site_name_that_is_not_safe_in_a_path_is_refused(tmp_path: Path, name: str) -> None:
    (line,) = errors(write(tmp_path, edit(BASE, 'name = "test_site"', f"name = '{name}'")))  # literal
    assert f"site.name = {name!r}: a name that becomes part of a path" in line


@pytest.mark.parametrize("name", ["guangdong_factory", "CA-303", "site.v2", "9"])
def test_safe_names_are_accepted(tmp_path: Path, name: str) -> None:
    text = edit(BASE, 'name = "test_site"', f'name = "{name}"')
    text = edit(text, 'name = "bess"', f'name = "{name}"')
    assert load_site(str(write(tmp_path, text))).config.site.name == name


def test_data_period_is_checked_and_a_toml_date_is_accepted(tmp_path: Path) -> None:
    text = edit(BASE, "longitude = 113.3",
                'longitude = 113.3\ndata_start = 2025-01-01\ndata_end = "2025-12-31"')
    assert load_site(str(write(tmp_path, text))).config.site.data_start == "2025-01-01"
    for bad in ('"2025-13-01"', '"20250101"', '"2025-02-30"', '"yesterday"'):
        (line,) = errors(write(tmp_path, edit(text, "data_start = 2025-01-01", f"data_start = {bad}")))
        assert f"site.data_start = {bad.replace(chr(34), chr(39))}: not a date (expected YYYY-MM-DD" in line


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    text = BASE.replace('name = "bess"', '# caf\xe9\nname = "bess"')
    path.write_bytes(text.encode("latin-1"))
    line_no = text[:text.index("caf")].count("\n") + 1
    (line,) = errors(path)
    assert line == (f"{path}: line {line_no}: byte 0xe9 is not UTF-8 "
                    "(TOML files are UTF-8 text; save the file as UTF-8)")


# --- overrides ---------------------------------------------------------------------------


def test_override_every_battery(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + SECOND_BATTERY)
    cfg = load_site(str(path), ["battery.capacity_kwh=4000"]).config
    assert [b.capacity_kwh for b in cfg.battery] == [4000.0, 4000.0]


def test_override_battery_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + SECOND_BATTERY)
    cfg = load_site(str(path), ["battery.b2.capacity_kwh=750"]).config
    assert [b.capacity_kwh for b in cfg.battery] == [2000.0, 750.0]


def test_override_battery_by_index(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + SECOND_BATTERY)
    cfg = load_site(str(path), ["battery[0].max_charge_kw=123.5"]).config
    assert [b.max_charge_kw for b in cfg.battery] == [123.5, 250.0]


def test_override_bundled_site() -> None:
    cfg = load_site("guangdong_factory", ["battery.capacity_kwh=4000",
                                          "battery.bess.max_charge_kw=1500"]).config
    assert cfg.battery[0].capacity_kwh == 4000.0
    assert cfg.battery[0].max_charge_kw == 1500.0


@pytest.mark.parametrize("text", ['"carbon"', "carbon"])
def test_override_string_value(text: str) -> None:
    cfg = load_site("guangdong_factory", [f"planning.objective={text}"]).config
    assert cfg.planning.objective == "carbon"


def test_override_nested_list_entry() -> None:
    cfg = load_site("guangdong_factory", ['ev_sessions.schedule[0].days="all"']).config
    assert cfg.ev_sessions is not None and cfg.ev_sessions.kind == "daily"
    assert cfg.ev_sessions.schedule[0].days == "all"


def test_override_value_is_validated() -> None:
    with pytest.raises(ConfigError) as info:
        load_site("guangdong_factory", ['planning.objective="money"'])
    (line,) = info.value.lines
    assert "planning.objective = 'money'" in line


def test_override_negative_value_names_field() -> None:
    with pytest.raises(ConfigError) as info:
        load_site("guangdong_factory", ["battery.bess.capacity_kwh=-5.0"])
    (line,) = info.value.lines
    assert "battery[0].capacity_kwh = -5.0" in line


@pytest.mark.parametrize(
    ("item", "fragment"),
    [
        ("battery[3].capacity_kwh=1", "battery[3]"),
        ("batery.capacity_kwh=1", "batery"),
        ("planing.objective=cost", "planing"),
        ("battery.capacity_kwh", "KEY=VALUE"),
        ("battery..capacity_kwh=1", "bad key part"),
    ],
)
def test_override_bad_key(item: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_site("guangdong_factory", [item])
    assert any(fragment in ln for ln in info.value.lines), info.value.lines


def test_apply_override_on_raw_tree() -> None:
    raw = {"battery": [{"name": "a", "capacity_kwh": 1.0}, {"name": "b", "capacity_kwh": 2.0}],
           "planning": {"objective": "cost"}}
    apply_override(raw, "battery.b.capacity_kwh=5")
    assert [b["capacity_kwh"] for b in raw["battery"]] == [1.0, 5]
    apply_override(raw, "battery[0].capacity_kwh=7.5")
    assert [b["capacity_kwh"] for b in raw["battery"]] == [7.5, 5]
    apply_override(raw, "battery.capacity_kwh=9")
    assert [b["capacity_kwh"] for b in raw["battery"]] == [9, 9]
    apply_override(raw, "planning.objective = carbon")
    assert raw["planning"]["objective"] == "carbon"
    apply_override(raw, "planning.horizon_hours=24")
    assert raw["planning"]["horizon_hours"] == 24
