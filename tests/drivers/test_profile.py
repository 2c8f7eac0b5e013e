import struct
from collections import Counter
from pathlib import Path

import pytest

from drivers.modbus.profile import (
    Profile,
    ProfileError,
    Reading,
    decode_block,
    decode_reads,
    encode_command,
    load_profile,
    load_profiles,
    parse_profile,
    plan_reads,
)
from drivers.profiles import PROFILES_DIR

BUNDLED = sorted(PROFILES_DIR.glob("*.toml"))


def f32(value: float) -> list[int]:
    """float32 as two registers, high word first, built with struct (not our encoder)."""
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return [hi, lo]


def test_bundled_profiles_present() -> None:
    names = {p.name for p in BUNDLED}
    assert {"sdm630.toml", "enapter_el.toml"} <= names
    profiles = load_profiles(PROFILES_DIR)
    assert {"eastron_sdm630", "enapter_el"} <= set(profiles)
    assert profiles["eastron_sdm630"].kind == "meter"
    assert profiles["enapter_el"].kind == "electrolyser"


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
@pytest.mark.parametrize("max_block", [125, 16, 4, 2])
def test_plan_reads_covers_every_point_once(path: Path, max_block: int) -> None:
    profile = load_profile(path)
    widest = max(p.width for p in profile.points.values())
    if widest > max_block:
        # a point is read in one request: a block smaller than the point is refused
        with pytest.raises(ValueError):
            plan_reads(profile, max_block=max_block)
        return
    blocks = plan_reads(profile, max_block=max_block)
    seen = Counter(name for block in blocks for name in block.points)
    assert set(seen) == set(profile.points)
    assert all(n == 1 for n in seen.values())
    for block in blocks:
        assert 1 <= block.count <= min(max_block, 125, profile.max_read_registers)
        for name in block.points:
            p = profile.points[name]
            assert p.table == block.table
            assert block.start <= p.address
            assert p.address + p.width <= block.start + block.count


def test_plan_reads_merges_sdm630_into_one_read_and_respects_gap() -> None:
    profile = load_profile(PROFILES_DIR / "sdm630.toml")
    (block,) = plan_reads(profile)
    assert (block.table, block.start, block.count) == ("input", 0, 76)
    # Without gap bridging the map splits where registers are unused.
    starts = [(b.start, b.count) for b in plan_reads(profile, max_gap=0)]
    assert starts == [(0, 18), (52, 2), (70, 6)]


def test_plan_reads_subset_adds_scale_factor_point() -> None:
    profile = parse_profile(_sunspec_like())
    blocks = plan_reads(profile, names=["w"])
    assert {n for b in blocks for n in b.points} == {"w", "w_sf"}
    with pytest.raises(KeyError, match="nope"):
        plan_reads(profile, names=["nope"])


def test_decode_sdm630_hand_laid_registers() -> None:
    profile = load_profile(PROFILES_DIR / "sdm630.toml")
    (block,) = plan_reads(profile)
    regs = [0] * block.count
    values = {
        0: 230.5, 2: 231.25, 4: 229.75,  # V
        6: 10.5, 8: 11.0, 10: 9.5,  # A
        12: 2400.0, 14: 2500.0, 16: -1200.5,  # W
        52: 3699.5,  # total W, positive = import
        70: 50.0,  # Hz
        72: 12345.5, 74: 678.25,  # kWh
    }
    for addr, value in values.items():
        regs[addr - block.start : addr - block.start + 2] = f32(value)
    readings = decode_block(profile, block, regs)
    assert readings["voltage_l1_v"] == Reading(230.5, "V", None)
    assert readings["voltage_l3_v"].value == 229.75
    assert readings["current_l2_a"] == Reading(11.0, "A", None)
    assert readings["active_power_l3_w"].value == -1200.5
    assert readings["total_active_power_net_w"] == Reading(3699.5, "W", None)
    assert readings["frequency_hz"] == Reading(50.0, "Hz", None)
    assert readings["import_energy_kwh"] == Reading(12345.5, "kWh", None)
    assert readings["export_energy_kwh"] == Reading(678.25, "kWh", None)
    # Word order check with an asymmetric value: 230.5 is 0x43668000.
    assert f32(230.5) == [0x4366, 0x8000]


def test_decode_sdm630_missing_values() -> None:
    profile = load_profile(PROFILES_DIR / "sdm630.toml")
    (block,) = plan_reads(profile)
    regs = [0] * block.count
    regs[0:2] = [0x7FC0, 0x0000]  # NaN
    regs[70:72] = f32(0.0)  # 0 Hz: outside the valid range
    regs[2:4] = f32(9999.0)  # implausible voltage
    readings = decode_block(profile, block, regs)
    assert readings["voltage_l1_v"] == Reading(None, "V", "not available (NaN)")
    assert readings["frequency_hz"] == Reading(None, "Hz", "out of range")
    assert readings["voltage_l2_v"] == Reading(None, "V", "out of range")
    assert readings["total_active_power_net_w"] == Reading(0.0, "W", None)
    with pytest.raises(ValueError, match="expects 76 registers"):
        decode_block(profile, block, regs[:-1])


def test_decode_enapter_flow_nan_when_idle() -> None:
    profile = load_profile(PROFILES_DIR / "enapter_el.toml")
    blocks = {(b.table, b.start): b for b in plan_reads(profile)}
    block = blocks[("input", 1006)]
    readings = decode_block(profile, block, [*f32(1520.5), 0x7FC0, 0])
    assert readings["h2_total_nl"] == Reading(1520.5, "NL", None)
    assert readings["h2_flow_nl_per_h"] == Reading(None, "NL/h", "not available (NaN)")


def test_enapter_commands() -> None:
    profile = load_profile(PROFILES_DIR / "enapter_el.toml")
    assert encode_command(profile, "start_stop", 1) == [1]
    assert encode_command(profile, "production_rate_pct", 80.0) == f32(80.0)
    with pytest.raises(ValueError, match=r"production_rate_pct: value 30\.0 outside limits"):
        encode_command(profile, "production_rate_pct", 30.0)
    with pytest.raises(ValueError, match="start_stop: value 2"):
        encode_command(profile, "start_stop", 2)
    hb = profile.commands["heartbeat_timeout"]
    assert hb.flash_backed and hb.write_budget_per_day
    assert encode_command(profile, "heartbeat_timeout", 70000) == [0x0001, 0x1170]


def _sunspec_like() -> dict[str, object]:
    return {
        "name": "t",
        "vendor": "v",
        "model": "m",
        "kind": "pv_inverter",
        "points": {
            "w": {"address": 40083, "table": "holding", "type": "int16", "unit": "W",
                  "valid_range": [-1e7, 1e7], "scale_factor_point": "w_sf", "sentinel": "sunspec"},
            "w_sf": {"address": 40084, "table": "holding", "type": "int16", "sentinel": "sunspec"},
            "wh": {"address": 40093, "table": "holding", "type": "uint32", "unit": "Wh",
                   "scale_factor_point": "wh_sf", "valid_range": [0, 1e12]},
            "wh_sf": {"address": 40300, "table": "holding", "type": "int16"},
        },
    }


def test_decode_scale_factors_same_and_other_block() -> None:
    profile = parse_profile(_sunspec_like())
    blocks = plan_reads(profile, max_gap=10)
    assert len(blocks) == 2
    near, far = sorted(blocks, key=lambda b: b.start)
    regs = [0] * near.count
    regs[0] = 2305  # W raw
    regs[1] = 0xFFFF  # W_SF = -1
    regs[10:12] = [0x0001, 0x0000]  # WH raw 65536
    far_regs = [3]  # WH_SF = 3
    alone = decode_block(profile, near, regs)
    assert alone["w"] == Reading(230.5, "W", None)
    assert alone["wh"] == Reading(None, "Wh", "scale factor wh_sf not read")
    both = decode_reads(profile, [(near, regs), (far, far_regs)])
    assert both["wh"] == Reading(65536000.0, "Wh", None)
    regs[1] = 0x8000  # scale factor not implemented
    missing = decode_block(profile, near, regs)
    assert missing["w"].value is None
    assert missing["w"].missing_reason == "scale factor w_sf: not implemented (sentinel 0x8000)"
    regs[1] = 0
    regs[0] = 0x8000
    assert decode_block(profile, near, regs)["w"].missing_reason == "not implemented (sentinel 0x8000)"


# --------------------------------------------------------------------------------------------
# Bad profiles

HEADER = 'name = "bad"\nvendor = "v"\nmodel = "m"\nkind = "meter"\n'


def _load_bad(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "bad.toml"
    path.write_text(HEADER + body)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    lines = info.value.problems
    assert lines and all(line.startswith(f"{path}: ") for line in lines)
    return lines


def test_overlapping_points(tmp_path: Path) -> None:
    lines = _load_bad(tmp_path, """
[points.a]
address = 10
table = "input"
type = "float32"
[points.b]
address = 11
table = "input"
type = "uint16"
""")
    assert len(lines) == 1
    assert "points.b: address:" in lines[0] and "overlap points.a" in lines[0] and "got 11" in lines[0]


def test_overlap_allowed_explicitly_or_in_other_table(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text(HEADER + """
[points.a]
address = 10
table = "input"
type = "float32"
allow_overlap = true
[points.a_hi]
address = 10
table = "input"
type = "uint16"
allow_overlap = true
[points.h]
address = 10
table = "holding"
type = "float32"
""")
    profile = load_profile(path)
    seen = Counter(n for b in plan_reads(profile) for n in b.points)
    assert seen == Counter({"a": 1, "a_hi": 1, "h": 1})


def test_unknown_scale_factor_point(tmp_path: Path) -> None:
    lines = _load_bad(tmp_path, """
[points.w]
address = 0
table = "holding"
type = "int16"
scale_factor_point = "w_sf"
[points.x_sf]
address = 5
table = "holding"
type = "float32"
[points.x]
address = 3
table = "holding"
type = "int16"
scale_factor_point = "x_sf"
""")
    assert any("points.w: scale_factor_point: no such point 'w_sf'" in line for line in lines)
    assert any("points.x: scale_factor_point: 'x_sf' must be int16, got float32" in line for line in lines)


def test_limit_outside_type_range(tmp_path: Path) -> None:
    lines = _load_bad(tmp_path, """
[commands.set_a]
address = 100
type = "uint16"
limits = [-5, 10]
[commands.set_w]
address = 110
type = "int16"
scale = 0.1
limits = [0, 5000]
""")
    assert any("commands.set_a: limits: -5 outside what uint16 can hold" in line for line in lines)
    assert any("commands.set_w: limits: 5000 outside what int16 can hold" in line for line in lines)


def test_address_above_65535(tmp_path: Path) -> None:
    lines = _load_bad(tmp_path, """
[points.a]
address = 70000
table = "input"
type = "uint16"
[points.b]
address = 65535
table = "input"
type = "uint32"
""")
    assert any("points.a.address:" in line and "got 70000" in line for line in lines)
    _load_bad_b = _load_bad(tmp_path, """
[points.b]
address = 65535
table = "input"
type = "uint32"
""")
    expected = "points.b: address: span 65535..65536 runs past 65535, got 65535"
    assert _load_bad_b == [f"{tmp_path / 'bad.toml'}: {expected}"]


def test_unknown_field(tmp_path: Path) -> None:
    lines = _load_bad(tmp_path, """
[points.a]
address = 1
table = "input"
type = "uint16"
scal = 0.1
""")
    assert lines == [f"{tmp_path / 'bad.toml'}: points.a.scal: unknown field, got 0.1"]


def test_bad_type_and_table_values(tmp_path: Path) -> None:
    lines = _load_bad(tmp_path, """
[points.a]
address = 1
table = "coil"
type = "int8"
""")
    assert any("points.a.table:" in line and "got 'coil'" in line for line in lines)
    assert any("points.a.type:" in line and "got 'int8'" in line for line in lines)


def test_command_rules(tmp_path: Path) -> None:
    lines = _load_bad(tmp_path, """
[commands.a]
address = 1
type = "float32"
encoding = "write_single"
keepalive_s = 0
[commands.b]
address = 10
type = "uint16"
flash_backed = true
""")
    assert any("commands.a: encoding: write_single (FC6) cannot write a float32" in line for line in lines)
    assert any("commands.a: keepalive_s: must be > 0, got 0" in line for line in lines)
    assert any("commands.b: write_budget_per_day: required when flash_backed" in line for line in lines)


def test_string_needs_count_and_bad_toml(tmp_path: Path) -> None:
    lines = _load_bad(tmp_path, """
[points.sn]
address = 1
table = "holding"
type = "string"
""")
    assert any("points.sn: count: a string needs a register count" in line for line in lines)
    bad = tmp_path / "broken.toml"
    bad.write_text("name = ")
    with pytest.raises(ProfileError, match=r"broken\.toml: not valid TOML"):
        load_profile(bad)


def test_load_profiles_reports_every_bad_file(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(HEADER + '[points.x]\naddress = -1\ntable = "input"\ntype = "uint16"\n')
    (tmp_path / "b.toml").write_text(HEADER.replace('kind = "meter"', 'kind = "toaster"'))
    with pytest.raises(ProfileError) as info:
        load_profiles(tmp_path)
    text = str(info.value)
    assert "a.toml: points.x.address:" in text and "got -1" in text
    assert "b.toml: kind:" in text and "got 'toaster'" in text


def test_profile_is_frozen() -> None:
    profile = load_profile(PROFILES_DIR / "sdm630.toml")
    with pytest.raises(Exception, match="frozen"):
        profile.unit_id = 2
    assert isinstance(profile, Profile)


def _watchdog_profile(**command: object) -> dict[str, object]:
    return {
        "name": "wd",
        "vendor": "t",
        "model": "t",
        "kind": "ev_charger",
        "points": {"safe_a": {"address": 10, "table": "holding", "type": "uint16"}},
        "commands": {"limit_a": {"address": 20, "type": "uint16", **command}},
    }


def test_watchdog_needs_keepalive_at_most_half() -> None:
    ok = parse_profile(_watchdog_profile(keepalive_s=30.0, watchdog_s=60.0, fallback_point="safe_a"))
    assert ok.commands["limit_a"].watchdog_s == 60.0
    with pytest.raises(ProfileError) as err:
        parse_profile(_watchdog_profile(keepalive_s=31.0, watchdog_s=60.0))
    expected = "commands.limit_a: keepalive_s: must be at most half of watchdog_s (60 s), got 31.0"
    assert expected in str(err.value)
    with pytest.raises(ProfileError) as err:
        parse_profile(_watchdog_profile(keepalive_s=10.0, watchdog_s=60.0, fallback_point="nope"))
    assert "commands.limit_a: fallback_point: no such point 'nope'" in str(err.value)
    with pytest.raises(ProfileError) as err:
        parse_profile(_watchdog_profile(fallback_value=6.0))
    assert "commands.limit_a: watchdog_s: a fallback needs the device's watchdog_s" in str(err.value)


def test_a_watchdog_to_arm_names_existing_commands_that_can_be_kept_alive(tmp_path: Path) -> None:
    lines = _load_bad(tmp_path, """
[commands.run]
address = 10
type = "uint16"

[commands.timeout]
address = 20
type = "uint16"
flash_backed = true
write_budget_per_day = 4

[watchdog_arm]
command = "heartbeat"
value_s = 60
fed_by = ["run", "timeout", "rate"]
""")
    assert any("watchdog_arm: command: no such command 'heartbeat'" in line for line in lines)
    assert any("watchdog_arm: fed_by: no such command 'rate'" in line for line in lines)
    assert any("watchdog_arm: fed_by: 'timeout' is flash-backed" in line for line in lines)
