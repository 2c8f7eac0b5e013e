"""Device profiles: a device's register map as data.

A profile is a TOML file with a header (name, vendor, model, kind, unit id, default byte and word
order) and two tables: ``points`` (values to read) and ``commands`` (setpoints to write). The
generic driver reads a profile with :func:`plan_reads` and :func:`decode_block`; nothing here
talks to a socket.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, model_validator

from drivers.modbus.codec import (
    ByteOrder,
    DataType,
    Missing,
    RegisterSpec,
    WordOrder,
    decode,
    encode,
    is_float_type,
    raw_range,
    register_count,
    sunspec_sentinel,
)

DeviceKind = Literal["meter", "pv_inverter", "battery", "ev_charger", "electrolyser"]
Table = Literal["holding", "input"]
Address = Annotated[int, Field(ge=0, le=65535)]

MAX_READ_REGISTERS = 125
"""Modbus limits one read (FC3/FC4) to 125 registers."""

DEFAULT_MAX_GAP = 8
"""plan_reads bridges a gap of up to this many unused registers between two points rather than
starting a new request. Kept small: some devices answer a read that spans undefined registers
with an exception, and a profile can lower it through ``max_read_gap``."""


class ProfileError(Exception):
    """A profile file is invalid. ``problems`` holds one line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Point(_Frozen):
    """One value to read."""

    address: Address
    table: Table
    type: DataType
    count: int | None = Field(default=None, ge=1, le=MAX_READ_REGISTERS)
    word_order: WordOrder | None = None
    byte_order: ByteOrder | None = None
    scale: float | None = None
    scale_factor_point: str | None = None
    unit: str | None = None
    sentinel: StrictInt | Literal["sunspec"] | None = None
    no_value: list[StrictInt] = Field(default_factory=list)
    """Raw patterns (as ``sentinel``) the vendor uses for "no value" besides the sentinel."""
    valid_range: tuple[float, float] | None = None
    monotonic: bool = False
    """An energy counter: it never goes down and grows by at most what the device's nameplate power
    allows in the time between two reads (checked by the poller)."""
    allow_overlap: bool = False
    description: str = ""

    @property
    def width(self) -> int:
        return register_count(self.type, self.count)

    @property
    def power_unit(self) -> bool:
        """Whether the point is a power (its unit is one of :data:`POWER_UNITS`)."""
        return self.unit in POWER_UNITS


POWER_UNITS = frozenset({"W", "kW", "MW", "VA", "kVA", "var", "kvar"})
"""Units of power points; such points, and percentages (%), must declare a ``valid_range``."""
ENERGY_UNITS = {"Wh": 1.0, "kWh": 1000.0, "MWh": 1.0e6}
"""Energy units and their size in Wh."""


class Command(_Frozen):
    """One setpoint to write (holding registers).

    ``encoding`` picks the function code: ``write_single`` (FC6, one-register types only) or
    ``write_multiple`` (FC16, the default; multi-register values are always written atomically).
    ``limits`` are in engineering units, after ``scale``.

    ``watchdog_s`` is the device's own timeout: when the command is not written for that long the
    device reverts to its fallback, the value of point ``fallback_point`` (a safe current the
    installer configured) or ``fallback_value``. ``keepalive_s`` must be at most half of it.
    """

    address: Address
    type: DataType
    encoding: Literal["write_single", "write_multiple"] = "write_multiple"
    word_order: WordOrder | None = None
    byte_order: ByteOrder | None = None
    scale: float | None = None
    scale_factor_address: Address | None = None
    """A holding register (int16, SunSpec sunssf) with the command's scale exponent: read again
    before every write, so a changed scale factor never sends a value ten times off (``scale`` is
    then the exponent read at discovery, used for limits and rounding only)."""
    unit: str | None = None
    limits: tuple[float, float] | None = None
    keepalive_s: float | None = None
    watchdog_s: float | None = None
    fallback_point: str | None = None
    fallback_value: float | None = None
    flash_backed: bool = False
    write_budget_per_day: int | None = Field(default=None, ge=1)
    readback: bool = False
    processing_delay_s: float = Field(default=0.0, ge=0.0)
    transactional: bool = False
    description: str = ""

    @property
    def width(self) -> int:
        return register_count(self.type, None)


class Transaction(_Frozen):
    """A device's configuration transaction: write ``begin_value`` to ``begin_address``, then the
    value, then ``commit_value`` to ``commit_address`` (``rollback_value`` there abandons it);
    the device reports the outcome in ``result_address`` of ``result_table``. Commands marked
    ``transactional`` are written this way. ``success_values`` lists the result codes that mean
    the value was taken (empty: the source does not say, the code is only reported)."""

    begin_address: Address
    begin_value: int = Field(default=1, ge=0, le=0xFFFF)
    commit_address: Address
    commit_value: int = Field(default=1, ge=0, le=0xFFFF)
    rollback_value: int = Field(default=0, ge=0, le=0xFFFF)
    result_address: Address
    result_table: Table = "input"
    success_values: list[int] = Field(default_factory=list)


class WatchdogArm(_Frozen):
    """A device watchdog that is off until a client arms it: the service writes ``value_s``
    (seconds) to ``command`` when it links the device, and the device goes to its safe state when
    no command has been written for that long. The commands named in ``fed_by`` are re-written at
    least every third of the armed timeout to keep it fed."""

    command: str
    value_s: float = Field(gt=0, allow_inf_nan=False)
    fed_by: tuple[str, ...] = Field(min_length=1)
    description: str = ""


class Profile(_Frozen):
    name: str
    vendor: str
    model: str
    kind: DeviceKind
    unit_id: int = Field(default=1, ge=0, le=255)
    byte_order: ByteOrder = "big"
    word_order: WordOrder = "big"
    max_read_registers: int = Field(default=MAX_READ_REGISTERS, ge=1, le=MAX_READ_REGISTERS)
    max_read_gap: int = Field(default=DEFAULT_MAX_GAP, ge=0)
    description: str = ""
    points: dict[str, Point] = Field(default_factory=dict)
    commands: dict[str, Command] = Field(default_factory=dict)
    transaction: Transaction | None = None
    watchdog_arm: WatchdogArm | None = None

    @model_validator(mode="after")
    def _check(self) -> Profile:
        problems = _check_profile(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def point_spec(self, name: str) -> RegisterSpec:
        p = self.points[name]
        sentinel = sunspec_sentinel(p.type) if p.sentinel == "sunspec" else p.sentinel
        return RegisterSpec(
            type=p.type,
            count=p.count,
            word_order=p.word_order or self.word_order,
            byte_order=p.byte_order or self.byte_order,
            scale=p.scale,
            sentinel=sentinel if isinstance(sentinel, int) else None,
            no_value=tuple(p.no_value),
        )

    def command_spec(self, name: str) -> RegisterSpec:
        c = self.commands[name]
        return RegisterSpec(
            type=c.type,
            word_order=c.word_order or self.word_order,
            byte_order=c.byte_order or self.byte_order,
            scale=c.scale,
        )


def _fmt(value: object) -> str:
    return repr(value)


def _check_range(where: str, field: str, rng: tuple[float, float] | None) -> list[str]:
    if rng is None:
        return []
    lo, hi = rng
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        return [f"{where}: {field}: must be [min, max] with min <= max, got {_fmt(list(rng))}"]
    return []


def _check_profile(profile: Profile) -> list[str]:
    problems: list[str] = []
    for name, p in profile.points.items():
        where = f"points.{name}"
        if p.type == "string":
            if p.count is None:
                problems.append(f"{where}: count: a string needs a register count, got None")
            for field in ("scale", "scale_factor_point", "valid_range"):
                if getattr(p, field) is not None:
                    value = getattr(p, field)
                    problems.append(f"{where}: {field}: not allowed on a string, got {_fmt(value)}")
        elif p.count is not None and p.count != register_count(p.type):
            problems.append(f"{where}: count: {p.type} occupies {register_count(p.type)}, got {p.count}")
        if p.scale is not None and (not math.isfinite(p.scale) or p.scale == 0):
            problems.append(f"{where}: scale: must be finite and non-zero, got {_fmt(p.scale)}")
        if p.scale is not None and p.scale_factor_point is not None:
            problems.append(f"{where}: scale_factor_point: use scale or scale_factor_point, not both")
        if p.scale_factor_point is not None:
            sf = profile.points.get(p.scale_factor_point)
            if sf is None or p.scale_factor_point == name:
                problems.append(f"{where}: scale_factor_point: no such point {p.scale_factor_point!r}")
            elif sf.type != "int16":
                problems.append(
                    f"{where}: scale_factor_point: {p.scale_factor_point!r} must be int16, got {sf.type}"
                )
            elif sf.scale_factor_point is not None or sf.scale is not None:
                problems.append(
                    f"{where}: scale_factor_point: {p.scale_factor_point!r} must not be scaled itself"
                )
        if isinstance(p.sentinel, int):
            try:
                width = register_count(p.type, p.count)
            except ValueError:
                width = 0
            if width and not 0 <= p.sentinel < 2 ** (16 * width):
                problems.append(f"{where}: sentinel: does not fit {p.type}, got {_fmt(p.sentinel)}")
        if p.sentinel == "sunspec" and is_float_type(p.type):
            problems.append(f"{where}: sentinel: floats use NaN, got 'sunspec'")
        width = _safe_width(p.type, p.count)
        for pattern in p.no_value:
            if not 0 <= pattern < 2 ** (16 * width):
                problems.append(
                    f"{where}: no_value: {pattern:#x} does not fit {p.type}, got {_fmt(p.no_value)}"
                )
        problems += _check_range(where, "valid_range", p.valid_range)
        if p.valid_range is None and (p.power_unit or p.unit == "%"):
            kind = "a percentage" if p.unit == "%" else f"a power ({p.unit})"
            problems.append(f"{where}: valid_range: {kind} point needs a plausibility range, got None")
        if p.monotonic and p.unit not in ENERGY_UNITS:
            problems.append(
                f"{where}: monotonic: only for energy counters ({', '.join(ENERGY_UNITS)}), "
                f"got unit {p.unit!r}"
            )
        try:
            end = p.address + p.width - 1
        except ValueError:
            continue
        if end > 65535:
            problems.append(f"{where}: address: span {p.address}..{end} runs past 65535, got {p.address}")

    problems += _overlaps(
        "points",
        {
            n: (p.table, p.address, _safe_width(p.type, p.count), p.allow_overlap)
            for n, p in profile.points.items()
        },
    )

    for name, c in profile.commands.items():
        where = f"commands.{name}"
        if c.type == "string":
            problems.append(f"{where}: type: a command must be numeric, got 'string'")
            continue
        if c.encoding == "write_single" and c.width != 1:
            problems.append(
                f"{where}: encoding: write_single (FC6) cannot write a {c.type}, got {c.encoding!r}"
            )
        if c.scale is not None and (not math.isfinite(c.scale) or c.scale == 0):
            problems.append(f"{where}: scale: must be finite and non-zero, got {_fmt(c.scale)}")
        if c.keepalive_s is not None and not (math.isfinite(c.keepalive_s) and c.keepalive_s > 0):
            problems.append(f"{where}: keepalive_s: must be > 0, got {_fmt(c.keepalive_s)}")
        if c.flash_backed and c.write_budget_per_day is None:
            problems.append(f"{where}: write_budget_per_day: required when flash_backed is true, got None")
        if not c.flash_backed and c.write_budget_per_day is not None:
            problems.append(
                f"{where}: write_budget_per_day: only for flash_backed commands, got {c.write_budget_per_day}"
            )
        if c.watchdog_s is not None:
            if not (math.isfinite(c.watchdog_s) and c.watchdog_s > 0):
                problems.append(f"{where}: watchdog_s: must be > 0, got {_fmt(c.watchdog_s)}")
            elif c.keepalive_s is None or c.keepalive_s > c.watchdog_s / 2:
                problems.append(
                    f"{where}: keepalive_s: must be at most half of watchdog_s ({c.watchdog_s:g} s), "
                    f"got {_fmt(c.keepalive_s)}"
                )
            if c.fallback_point is not None and c.fallback_value is not None:
                problems.append(f"{where}: fallback_point: give fallback_point or fallback_value, not both")
        elif c.fallback_point is not None or c.fallback_value is not None:
            problems.append(f"{where}: watchdog_s: a fallback needs the device's watchdog_s, got None")
        if c.transactional and profile.transaction is None:
            problems.append(f"{where}: transactional: the profile defines no [transaction], got True")
        if c.fallback_point is not None and c.fallback_point not in profile.points:
            problems.append(f"{where}: fallback_point: no such point {c.fallback_point!r}")
        if c.flash_backed and c.keepalive_s is not None:
            problems.append(f"{where}: keepalive_s: a flash-backed register must not be kept alive")
        range_problems = _check_range(where, "limits", c.limits)
        problems += range_problems
        if c.limits is not None and not range_problems:
            raw_lo, raw_hi = raw_range(c.type)
            scale = 1.0 if c.scale is None else c.scale
            eng_lo, eng_hi = sorted((raw_lo * scale, raw_hi * scale))
            for bound in c.limits:
                if not eng_lo <= bound <= eng_hi:
                    problems.append(
                        f"{where}: limits: {bound:g} outside what {c.type} can hold "
                        f"[{eng_lo:g}, {eng_hi:g}], got {_fmt(list(c.limits))}"
                    )
        end = c.address + c.width - 1
        if end > 65535:
            problems.append(f"{where}: address: span {c.address}..{end} runs past 65535, got {c.address}")
    problems += _overlaps(
        "commands", {n: ("holding", c.address, c.width, False) for n, c in profile.commands.items()}
    )
    problems += _check_watchdog_arm(profile)
    return problems


def _check_watchdog_arm(profile: Profile) -> list[str]:
    arm = profile.watchdog_arm
    if arm is None:
        return []
    problems: list[str] = []
    if arm.command not in profile.commands:
        problems.append(f"watchdog_arm: command: no such command {arm.command!r}")
    for name in arm.fed_by:
        command = profile.commands.get(name)
        if command is None:
            problems.append(f"watchdog_arm: fed_by: no such command {name!r}")
        elif command.flash_backed:
            problems.append(f"watchdog_arm: fed_by: {name!r} is flash-backed and must not be kept alive")
    return problems


def _safe_width(dtype: DataType, count: int | None) -> int:
    try:
        return register_count(dtype, count)
    except ValueError:
        return 1


def _overlaps(section: str, spans: Mapping[str, tuple[str, int, int, bool]]) -> list[str]:
    problems: list[str] = []
    items = sorted(spans.items(), key=lambda kv: (kv[1][0], kv[1][1], kv[0]))
    for i, (name_a, (table_a, addr_a, width_a, ok_a)) in enumerate(items):
        for name_b, (table_b, addr_b, width_b, ok_b) in items[i + 1 :]:
            if table_b != table_a or addr_b >= addr_a + width_a:
                break
            if ok_a and ok_b:
                continue
            problems.append(
                f"{section}.{name_b}: address: {table_b} registers {addr_b}..{addr_b + width_b - 1} overlap "
                f"{section}.{name_a} ({addr_a}..{addr_a + width_a - 1}), got {addr_b}"
            )
    return problems


def _error_lines(file: str, exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"])
        msg = str(err["msg"])
        if not loc and msg.startswith("Value error, "):
            lines += [f"{file}: {line}" for line in msg.removeprefix("Value error, ").splitlines()]
            continue
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        lines.append(f"{file}: {loc}: {msg}, got {_fmt(err.get('input'))}")
    return lines


def parse_profile(data: Mapping[str, Any], source: str = "<profile>") -> Profile:
    """Build a profile from parsed TOML; problems raise ProfileError naming ``source``."""
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(_error_lines(source, exc)) from None


def load_profile(path: str | Path) -> Profile:
    """Read and validate one TOML profile."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ProfileError([f"{path}: cannot read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError([f"{path}: not valid TOML: {exc}"]) from None
    return parse_profile(data, str(path))


def load_profiles(directory: str | Path) -> dict[str, Profile]:
    """Load every ``*.toml`` in ``directory`` by profile name; all problems are reported together."""
    profiles: dict[str, Profile] = {}
    problems: list[str] = []
    for path in sorted(Path(directory).glob("*.toml")):
        try:
            profile = load_profile(path)
        except ProfileError as exc:
            problems += exc.problems
            continue
        if profile.name in profiles:
            problems.append(f"{path}: name: profile {profile.name!r} is defined twice, got {profile.name!r}")
            continue
        profiles[profile.name] = profile
    if problems:
        raise ProfileError(problems)
    return profiles


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class ReadBlock:
    """One read request: ``count`` registers of ``table`` from ``start``, holding ``points``."""

    table: Table
    start: int
    count: int
    points: tuple[str, ...]


@dataclass(frozen=True)
class Reading:
    """A decoded point: ``value`` is None exactly when ``missing_reason`` says why."""

    value: float | str | None
    unit: str | None
    missing_reason: str | None = None


def plan_reads(
    profile: Profile,
    names: Iterable[str] | None = None,
    max_block: int = MAX_READ_REGISTERS,
    max_gap: int | None = None,
) -> list[ReadBlock]:
    """Group the points' registers into contiguous reads, per table, of at most ``max_block``.

    ``names`` selects points (default: all); the scale-factor points they need are added. Gaps of
    up to ``max_gap`` unused registers (default: the profile's ``max_read_gap``) are bridged.
    Every selected point lies wholly inside exactly one block.
    """
    limit = min(max_block, profile.max_read_registers)
    if not 1 <= limit <= MAX_READ_REGISTERS:
        raise ValueError(f"max_block must be in 1..{MAX_READ_REGISTERS}, got {max_block}")
    gap = profile.max_read_gap if max_gap is None else max_gap
    selected = set(profile.points) if names is None else set(names)
    unknown = selected - set(profile.points)
    if unknown:
        raise KeyError(f"{profile.name}: no such point(s): {', '.join(sorted(unknown))}")
    for name in list(selected):
        sf = profile.points[name].scale_factor_point
        if sf is not None:
            selected.add(sf)

    blocks: list[ReadBlock] = []
    for table in ("holding", "input"):
        pts = sorted(
            (p.address, p.address + p.width, n)
            for n, p in profile.points.items()
            if n in selected and p.table == table
        )
        span = {n: (a, b) for a, b, n in pts}
        start = end = -1
        members: list[str] = []
        for addr, stop, name in pts:
            if stop - addr > limit:
                raise ValueError(
                    f"{profile.name}: point {name} ({stop - addr} registers) exceeds max_block {limit}"
                )
            # A point and its scale factor are read in one request wherever they fit in one, so a
            # changed scale factor cannot tear a poll: the gap to a scale factor (or from it to a
            # point using it) is bridged, and a point starts a new block when its scale factor
            # further on would not fit in the current one.
            sf = profile.points[name].scale_factor_point
            sf_stop = span[sf][1] if sf in span and span[sf][0] >= stop else None
            pairs = sf in members or any(profile.points[m].scale_factor_point == name for m in members)
            fits = members and max(end, stop) - start <= limit and (addr - end <= gap or pairs)
            if fits and sf_stop is not None and sf_stop - start > limit and sf_stop - addr <= limit:
                fits = False
            if fits:
                end = max(end, stop)
                members.append(name)
                continue
            if members:
                blocks.append(ReadBlock(table, start, end - start, tuple(members)))
            start, end, members = addr, stop, [name]
        if members:
            blocks.append(ReadBlock(table, start, end - start, tuple(members)))
    return blocks


def _slice(block: ReadBlock, registers: Sequence[int], profile: Profile, name: str) -> Sequence[int]:
    p = profile.points[name]
    offset = p.address - block.start
    return registers[offset : offset + p.width]


def decode_block(
    profile: Profile,
    block: ReadBlock,
    registers: Sequence[int],
    scale_factors: Mapping[str, Reading] | None = None,
) -> dict[str, Reading]:
    """Decode the registers of one block into readings.

    A scale factor is taken from this block when it is in it, otherwise from ``scale_factors``
    (readings of other blocks, see :func:`decode_reads`). Values outside a point's
    ``valid_range`` become None with the reason "out of range".
    """
    if len(registers) != block.count:
        raise ValueError(f"{profile.name}: block at {block.table} {block.start} expects {block.count} "
                         f"registers, got {len(registers)}")
    readings: dict[str, Reading] = {}
    # Scale-factor points first, so the points that use them can find them.
    order = sorted(block.points, key=lambda n: profile.points[n].scale_factor_point is not None)
    for name in order:
        p = profile.points[name]
        sf: int | None = None
        if p.scale_factor_point is not None:
            sf_reading = readings.get(p.scale_factor_point) or (scale_factors or {}).get(p.scale_factor_point)
            if sf_reading is None:
                readings[name] = Reading(None, p.unit, f"scale factor {p.scale_factor_point} not read")
                continue
            if sf_reading.value is None or isinstance(sf_reading.value, str):
                readings[name] = Reading(
                    None, p.unit, f"scale factor {p.scale_factor_point}: {sf_reading.missing_reason}"
                )
                continue
            sf = int(sf_reading.value)
        raw = _slice(block, registers, profile, name)
        readings[name] = _reading(p, decode(raw, profile.point_spec(name), sf))
    return {name: readings[name] for name in block.points}


def decode_reads(profile: Profile, results: Sequence[tuple[ReadBlock, Sequence[int]]]) -> dict[str, Reading]:
    """Decode several blocks, resolving scale factors that live in another block."""
    sf_names = {p.scale_factor_point for p in profile.points.values() if p.scale_factor_point}
    scale_factors: dict[str, Reading] = {}
    for block, registers in results:
        for name in block.points:
            if name in sf_names:
                p = profile.points[name]
                value = decode(_slice(block, registers, profile, name), profile.point_spec(name))
                scale_factors[name] = _reading(p, value)
    readings: dict[str, Reading] = {}
    for block, registers in results:
        readings.update(decode_block(profile, block, registers, scale_factors))
    return readings


def _reading(point: Point, value: float | str | Missing) -> Reading:
    if isinstance(value, Missing):
        return Reading(None, point.unit, value.reason)
    if point.valid_range is not None and not isinstance(value, str):
        lo, hi = point.valid_range
        if not lo <= value <= hi:
            return Reading(None, point.unit, "out of range")
    return Reading(value, point.unit, None)


# ---------------------------------------------------------------------------------------------
# Writing


def encode_command(profile: Profile, name: str, value: float) -> list[int]:
    """Registers to write for command ``name``; a value outside its limits raises ValueError."""
    command = profile.commands[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{profile.name}: command {name}: value {value!r} is not a finite number")
    if command.limits is not None:
        lo, hi = command.limits
        if not lo <= value <= hi:
            raise ValueError(
                f"{profile.name}: command {name}: value {value!r} outside limits [{lo:g}, {hi:g}]"
            )
    try:
        return encode(value, profile.command_spec(name))
    except ValueError as exc:
        raise ValueError(f"{profile.name}: command {name}: {exc}") from None
