"""Generate ``docs/devices.md`` from the bundled profiles, the SunSpec profiles and the capability
mappings.

Run ``python -m drivers.docs_gen > docs/devices.md``; a test checks the committed file is current.
"""

from __future__ import annotations

import sys
from pathlib import Path

from drivers.capabilities import COMMAND_MAPPINGS, MAPPINGS, command_sources, field_units
from drivers.modbus.profile import Command, Point, Profile, load_profile
from drivers.profiles import PROFILES_DIR
from drivers.sunspec import NEVER_ZERO, SUNSPEC_PROFILE_NAMES, standard_layout, standard_profile
from drivers.sunspec.profile_spec import SPEC_DIR


def header_comment(path: Path) -> str:
    """The comment block at the top of a profile file, without the ``#`` markers."""
    lines: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    return "\n".join(lines).strip("\n")


def _cell(value: object) -> str:
    if value is None or value == "":
        return "–"
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _range(rng: tuple[float, float] | None) -> str:
    return "–" if rng is None else f"{rng[0]:g} … {rng[1]:g}"


def _address(address: int) -> str:
    return f"{address} (0x{address:04X})"


def _scale(point: Point) -> str:
    if point.scale_factor_point is not None:
        return f"10^{point.scale_factor_point}"
    return _cell(point.scale)


def _type(dtype: str, count: int | None = None) -> str:
    return f"{dtype}[{count}]" if dtype == "string" and count else dtype


def _flash(command: Command) -> str:
    return f"yes, ≤ {command.write_budget_per_day}/day" if command.flash_backed else "no"


def _profile_section(path: Path, profile: Profile, file: str | None = None) -> list[str]:
    out = [f"## {profile.name}", ""]
    out += [
        f"- Vendor: {profile.vendor}",
        f"- Model: {profile.model}",
        f"- Kind: {profile.kind}",
        f"- Unit id: {profile.unit_id}; byte order {profile.byte_order}, word order {profile.word_order}",
        f"- File: `{file or f'drivers/profiles/{path.name}'}`",
        "",
    ]
    comment = header_comment(path)
    if comment:
        out += ["Sources and notes (from the profile file):", "", "```text", comment, "```", ""]

    out += ["### Points", ""]
    out += ["| name | table | address | type | unit | scale | valid range (no value; counter) "
            "| description |"]
    out += ["|---|---|---|---|---|---|---|---|"]
    for name, p in profile.points.items():
        row = [
            f"`{name}`",
            p.table,
            _address(p.address),
            _type(p.type, p.count),
            _cell(p.unit),
            _scale(p),
            _plausibility(p),
            _cell(p.description),
        ]
        out.append("| " + " | ".join(row) + " |")
    out.append("")

    out += ["### Commands", ""]
    if not profile.commands:
        out += ["None.", ""]
    else:
        out += ["| name | address | type | write | unit | limits | keep-alive | flash-backed | read-back |"]
        out += ["|---|---|---|---|---|---|---|---|---|"]
        for name, c in profile.commands.items():
            fc = "FC6" if c.encoding == "write_single" else "FC16"
            row = [
                f"`{name}`",
                _address(c.address),
                c.type,
                fc,
                _cell(c.unit),
                _range(c.limits),
                "–" if c.keepalive_s is None else f"{c.keepalive_s:g} s",
                _flash(c),
                "yes" if c.readback else "no",
            ]
            out.append("| " + " | ".join(row) + " |")
        out.append("")

    out += ["### Capability fields", ""]
    mapping = MAPPINGS.get(profile.name, {})
    out += ["| field | unit | from point | conversion |", "|---|---|---|---|"]
    not_fed: list[str] = []
    for field_name, unit in field_units(profile.kind).items():
        src = mapping.get(field_name)
        if src is None:
            not_fed.append(f"`{field_name}`")
            continue
        out.append(f"| `{field_name}` | {_cell(unit)} | `{src.point}` | {_cell(src.describe())} |")
    out.append("")
    if not_fed:
        out += [f"Not provided by {profile.name} (always missing): {', '.join(not_fed)}.", ""]
    setpoints = COMMAND_MAPPINGS.get(profile.name)
    if setpoints:
        items = ", ".join(
            f"`{field}` → "
            + " + ".join(
                f"`{src.command}`"
                + (f" = {src.constant:g}" if src.constant is not None else "")
                + (f" (× {src.factor:g})" if src.factor != 1.0 and src.constant is None else "")
                for src in command_sources(entry)
            )
            for field, entry in setpoints.items()
        )
        out += [f"Setpoint fields: {items}.", ""]
    return out


def _sunspec_section(name: str) -> list[str]:
    layout = standard_layout(name)
    profile = standard_profile(name)
    path = SPEC_DIR / f"{name}.toml"
    out = _profile_section(path, profile, f"drivers/sunspec/profiles/{path.name}")
    chain = ", ".join(f"{m.id} ({m.name}) at {m.address}, L={m.length}" for m in layout.models)
    insert = out.index("### Points")
    out[insert:insert] = [
        "Resolved at the simulator's layout: \"SunS\" at "
        f"{layout.base}, models {chain}; end marker at {layout.end_address}. On a real device the "
        "addresses come from discovery (`drivers.sunspec.discover`) and may differ.",
        "",
    ]
    never_zero = sorted(NEVER_ZERO.get(name, ()))
    if never_zero:
        out += [
            "Write through `SafeWriter(never_zero={"
            + ", ".join(f'\"{c}\"' for c in never_zero)
            + "})`: 0 % puts some inverters into standby.",
            "",
        ]
    return out


def generate(directory: Path = PROFILES_DIR) -> str:
    """The Markdown text of ``docs/devices.md``."""
    paths = sorted(directory.glob("*.toml"))
    profiles = [(path, load_profile(path)) for path in paths]
    profiles.sort(key=lambda item: item[1].name)
    sunspec = [standard_profile(name) for name in SUNSPEC_PROFILE_NAMES]
    out = [
        "# Supported devices",
        "",
        "Generated by `python -m drivers.docs_gen` from `drivers/profiles/*.toml`,",
        "`drivers/sunspec/profiles/*.toml` and `drivers/capabilities.py`. Do not edit by hand.",
        "",
        "Addresses are wire (PDU) values. A value outside its valid range is reported missing, never",
        "clamped. Command limits are in engineering units (after scale). SunSpec profiles are shown",
        "resolved at the simulator's layout (base 40000, common model L=66); a scale `10^X` is read",
        "from point X in the same request as the value (value = raw × 10^X), and a command's scale",
        "factor is read from the device again before every write (the scale shown is the one read at",
        "discovery, used for limits and rounding).",
        "",
        "## Plausibility and faults",
        "",
        "- Every power point (W, kW, VA, var) and every percentage carries a valid range; a profile",
        "  without one is refused. SunSpec percentages default to 0 … 100 % (−100 … 100 % when",
        "  signed). \"no value\" patterns the vendor uses (0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, FLT_MAX,",
        "  NaN) are declared per point and read as missing, never as a value.",
        "- The poller also reports missing a power beyond 3 × the asset's nameplate power (from the",
        "  site config), and an energy counter (`monotonic`) that goes down (taken as a reset after",
        "  3 polls in a row) or grows faster than 3 × nameplate allows (plus 1 kWh).",
        "- Several unit ids behind one gateway share one connection. A unit that does not answer is",
        "  backed off on its own (0.5 s, doubling to 10 s while its neighbours answer); requests",
        "  for it fail at once meanwhile, and the healthy units are not held up by it. After the",
        "  whole link was silent, the first answer clears every unit's backoff. Requests queued",
        "  behind a dropped link fail fast without lengthening the link's backoff.",
        "- RTU: after a timeout the line is flushed (bytes discarded until it has been quiet for",
        "  the timeout) before the next request, so a late reply is never taken for the next",
        "  request's answer; a reply with more or fewer registers than asked for is refused.",
        "- A connection the device closes or resets is reported as closed, not as a timeout.",
        "- A SunSpec device that cannot be discovered when `ems run` starts is retried in the",
        "  background (1 s, doubling to 60 s) and linked when found; until then it is listed as",
        "  offline and raises `device_offline`. A model chain may end with 0xFFFF alone (no length",
        "  register after it).",
        "",
        "| name | vendor | model | kind |",
        "|---|---|---|---|",
    ]
    for profile in [p for _, p in profiles] + sunspec:
        row = [
            f"[{profile.name}](#{profile.name})",
            _cell(profile.vendor),
            _cell(profile.model),
            profile.kind,
        ]
        out.append("| " + " | ".join(row) + " |")
    out.append("")
    for path, profile in profiles:
        out += _profile_section(path, profile)
    for name in SUNSPEC_PROFILE_NAMES:
        out += _sunspec_section(name)
    return "\n".join(out).rstrip("\n") + "\n"


def _plausibility(p: Point) -> str:
    """The point's valid range, its declared "no value" patterns and whether it is a counter."""
    parts = [_range(p.valid_range)]
    if p.no_value:
        parts.append("no value " + ", ".join(f"0x{v:X}" for v in p.no_value))
    if p.monotonic:
        parts.append("monotonic counter")
    return "; ".join(parts)


def main() -> None:
    sys.stdout.write(generate())


if __name__ == "__main__":
    main()
