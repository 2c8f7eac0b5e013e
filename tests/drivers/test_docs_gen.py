from pathlib import Path

from drivers.docs_gen import generate, header_comment
from drivers.modbus.profile import load_profiles
from drivers.profiles import PROFILES_DIR

DOC = Path(__file__).resolve().parents[2] / "docs" / "devices.md"


def test_committed_devices_doc_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == generate(), (
        "docs/devices.md is stale: run python -m drivers.docs_gen > docs/devices.md"
    )


def test_doc_lists_every_profile_point_and_command() -> None:
    text = generate()
    for profile in load_profiles(PROFILES_DIR).values():
        assert f"## {profile.name}\n" in text
        assert f"| {profile.kind} |" in text
        for name in profile.points:
            assert f"| `{name}` |" in text
        for name in profile.commands:
            assert f"| `{name}` |" in text


def test_doc_details() -> None:
    text = generate()
    assert "| `max_current_a` | 1210 (0x04BA) | float32 | FC16 | A | 0 … 32 | 25 s | no | yes |" in text
    assert (
        "| `heartbeat_timeout` | 4600 (0x11F8) | uint32 | FC16 | – | 0 … 4.29497e+09 | – | yes, ≤ 4/day |"
        in text
    )
    assert "| `power_net_kw` | kW | `total_active_power_net_w` | W → kW; sign kept: + = import" in text
    assert "Not provided by enapter_el (always missing): `power_kw`, `tank_pressure_bar`" in text


def test_header_comment(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text("# First line\n#\n#   indented\nname = 'x'\n# not header\n", encoding="utf-8")
    assert header_comment(path) == "First line\n\n  indented"
    path.write_text("name = 'x'\n", encoding="utf-8")
    assert header_comment(path) == ""
