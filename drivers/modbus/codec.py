"""Encode and decode Modbus register values.

Byte order inside a register is big-endian, as Modbus defines; ``byte_order="little"`` exists for
devices that swap the two bytes of every register. ``word_order`` applies to 32- and 64-bit values:
``"big"`` sends the most significant register first, ``"little"`` the least significant first.
Strings are ASCII, two characters per register, first character in the high byte; word order does
not apply to them.

A register image that equals the point's "not implemented" sentinel, a NaN and an infinite float
all decode to :class:`Missing` with a reason, never to 0; so do the further "no value" patterns a
profile declares for a point (``no_value``: 0x7FFFFFFF, 0xFFFFFFFF, FLT_MAX...).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

DataType = Literal["int16", "uint16", "int32", "uint32", "float32", "float64", "string"]
WordOrder = Literal["big", "little"]
ByteOrder = Literal["big", "little"]

MAX_STRING_REGISTERS = 125
"""A string longer than one read (125 registers) cannot be read atomically."""

MAX_SCALE_FACTOR_EXPONENT = 10
"""SunSpec scale factors are small exponents; anything beyond ±10 is treated as a bad reading."""

_STRUCT_FORMAT: dict[str, str] = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "float32": "f",
    "float64": "d",
}
_WIDTH: dict[str, int] = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "float64": 4,
}
_INT_RANGE: dict[str, tuple[int, int]] = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}
_FLOAT_MAX: dict[str, float] = {
    "float32": struct.unpack(">f", b"\x7f\x7f\xff\xff")[0],
    "float64": 1.7976931348623157e308,
}

SUNSPEC_SENTINELS: dict[str, int] = {
    "int16": 0x8000,
    "uint16": 0xFFFF,
    "int32": 0x8000_0000,
    "uint32": 0xFFFF_FFFF,
    "string": 0,
}
"""SunSpec "not implemented" register images (floats use NaN, which is always missing)."""


@dataclass(frozen=True)
class Missing:
    """A value the device did not provide; ``reason`` says why."""

    reason: str


def is_integer_type(dtype: DataType) -> bool:
    return dtype in _INT_RANGE


def is_float_type(dtype: DataType) -> bool:
    return dtype in _FLOAT_MAX


def register_count(dtype: DataType, count: int | None = None) -> int:
    """Number of registers a value of ``dtype`` occupies (``count`` is required for strings)."""
    if dtype == "string":
        if count is None or not 1 <= count <= MAX_STRING_REGISTERS:
            raise ValueError(f"string needs a register count in 1..{MAX_STRING_REGISTERS}, got {count!r}")
        return count
    width = _WIDTH[dtype]
    if count is not None and count != width:
        raise ValueError(f"{dtype} occupies {width} register(s), got count={count!r}")
    return width


def raw_range(dtype: DataType) -> tuple[float, float]:
    """The range of raw (unscaled) values ``dtype`` can hold."""
    if dtype in _INT_RANGE:
        lo, hi = _INT_RANGE[dtype]
        return float(lo), float(hi)
    if dtype in _FLOAT_MAX:
        top = _FLOAT_MAX[dtype]
        return -top, top
    raise ValueError(f"{dtype} has no numeric range")


def sunspec_sentinel(dtype: DataType) -> int | None:
    """SunSpec's "not implemented" register image for ``dtype`` (None for floats: NaN)."""
    return SUNSPEC_SENTINELS.get(dtype)


@dataclass(frozen=True)
class RegisterSpec:
    """How one value is laid out in registers.

    ``scale`` multiplies the raw value (raw 2301 with scale 0.1 reads 230.1). ``sentinel`` is the
    value's raw bit pattern, as an unsigned integer once word and byte order are undone, that
    means "not implemented" (int16 0x8000, int32 0x80000000 whatever the word order; for strings,
    0 means an all-NUL string).
    """

    type: DataType
    count: int | None = None
    word_order: WordOrder = "big"
    byte_order: ByteOrder = "big"
    scale: float | None = None
    sentinel: int | None = None
    no_value: tuple[int, ...] = ()
    """Further raw bit patterns (as ``sentinel``) the device uses for "no value", e.g. 0x7FFFFFFF
    or FLT_MAX (0x7F7FFFFF); decoded as missing, never as a value."""

    def __post_init__(self) -> None:
        width = register_count(self.type, self.count)
        if self.scale is not None:
            if self.type == "string":
                raise ValueError("a string cannot have a scale")
            if not math.isfinite(self.scale) or self.scale == 0:
                raise ValueError(f"scale must be finite and non-zero, got {self.scale!r}")
        if self.sentinel is not None and not 0 <= self.sentinel < 2 ** (16 * width):
            raise ValueError(f"sentinel {self.sentinel:#x} does not fit {width} register(s)")
        for pattern in self.no_value:
            if not 0 <= pattern < 2 ** (16 * width):
                raise ValueError(f"no-value pattern {pattern:#x} does not fit {width} register(s)")

    @property
    def width(self) -> int:
        return register_count(self.type, self.count)


def _registers_to_bytes(registers: Sequence[int], spec: RegisterSpec) -> bytes:
    width = spec.width
    if len(registers) != width:
        raise ValueError(f"{spec.type} needs {width} register(s), got {len(registers)}: {list(registers)!r}")
    for reg in registers:
        if not 0 <= reg <= 0xFFFF:
            raise ValueError(f"register value {reg!r} is not a 16-bit word")
    words = list(registers)
    if spec.type != "string" and spec.word_order == "little":
        words.reverse()
    data = b"".join(w.to_bytes(2, "big") for w in words)
    if spec.byte_order == "little":
        data = _swap_bytes(data)
    return data


def _bytes_to_registers(data: bytes, spec: RegisterSpec) -> list[int]:
    if spec.byte_order == "little":
        data = _swap_bytes(data)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if spec.type != "string" and spec.word_order == "little":
        words.reverse()
    return words


def _swap_bytes(data: bytes) -> bytes:
    out = bytearray(data)
    out[0::2], out[1::2] = data[1::2], data[0::2]
    return bytes(out)


def _factor(spec: RegisterSpec, sf: int | None) -> tuple[float, int]:
    return (1.0 if spec.scale is None else spec.scale), (0 if sf is None else sf)


def _apply(value: float, scale: float, sf: int) -> float:
    # Dividing by 10**n rounds 123 / 10 to the float nearest 12.3, which 123 * 0.1 does not.
    if sf < 0:
        return value * scale / 10.0 ** (-sf)
    return value * scale * 10.0**sf


def decode(registers: Sequence[int], spec: RegisterSpec, sf: int | None = None) -> float | str | Missing:
    """Decode ``registers`` (exactly ``spec.width`` words) into a value.

    ``sf`` is a SunSpec scale-factor exponent: the result is raw × scale × 10**sf. Integers without
    any scaling come back as ``int``; scaled values as ``float``.
    """
    data = _registers_to_bytes(registers, spec)
    image = int.from_bytes(data, "big")
    if spec.sentinel is not None and image == spec.sentinel:
        return Missing(f"not implemented (sentinel {spec.sentinel:#0{2 + 4 * spec.width}x})")
    if image in spec.no_value:
        return Missing(f"no value (pattern {image:#0{2 + 4 * spec.width}x})")
    if spec.type == "string":
        text = data.split(b"\x00", 1)[0]
        try:
            return text.decode("ascii").rstrip(" ")
        except UnicodeDecodeError:
            return Missing(f"not ASCII: {text!r}")
    if sf is not None and abs(sf) > MAX_SCALE_FACTOR_EXPONENT:
        return Missing(f"scale factor {sf} out of range ±{MAX_SCALE_FACTOR_EXPONENT}")
    value: int | float = struct.unpack(">" + _STRUCT_FORMAT[spec.type], data)[0]
    if isinstance(value, float):
        if math.isnan(value):
            return Missing("not available (NaN)")
        if math.isinf(value):
            return Missing(f"not available ({value})")
    if spec.scale is None and sf is None:
        return value
    scale, exponent = _factor(spec, sf)
    return _apply(value, scale, exponent)


def encode(value: float | str, spec: RegisterSpec, sf: int | None = None) -> list[int]:
    """Encode ``value`` into registers; raises ValueError naming the value if it does not fit.

    Nothing is clamped. For integer types the scaled value is rounded to the nearest step; a value
    whose raw image equals the point's sentinel is refused (the device would read it as "missing").
    """
    if spec.type == "string":
        if not isinstance(value, str):
            raise ValueError(f"value {value!r} is not a string")
        try:
            data = value.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"value {value!r} is not ASCII") from None
        if b"\x00" in data:
            raise ValueError(f"value {value!r} contains NUL")
        size = 2 * spec.width
        if len(data) > size:
            raise ValueError(f"value {value!r} is longer than {size} characters ({spec.width} registers)")
        return _bytes_to_registers(data.ljust(size, b"\x00"), spec)

    if isinstance(value, str | bool):
        raise ValueError(f"value {value!r} is not a number")
    if sf is not None and abs(sf) > MAX_SCALE_FACTOR_EXPONENT:
        raise ValueError(f"scale factor {sf} out of range ±{MAX_SCALE_FACTOR_EXPONENT}")
    scale, exponent = _factor(spec, sf)
    raw: float = value
    if spec.scale is not None or sf is not None:
        raw = value / scale / 10.0**exponent if exponent >= 0 else value / scale * 10.0 ** (-exponent)

    if is_integer_type(spec.type):
        if not math.isfinite(raw):
            raise ValueError(f"value {value!r} does not fit {spec.type}")
        lo, hi = _INT_RANGE[spec.type]
        raw_int = round(raw)
        if not lo <= raw_int <= hi:
            raise ValueError(f"value {value!r} does not fit {spec.type} (raw {raw_int} outside [{lo}, {hi}])")
        data = struct.pack(">" + _STRUCT_FORMAT[spec.type], raw_int)
    else:
        try:
            data = struct.pack(">" + _STRUCT_FORMAT[spec.type], raw)
        except OverflowError:
            raise ValueError(f"value {value!r} does not fit {spec.type}") from None
    if spec.sentinel is not None and int.from_bytes(data, "big") == spec.sentinel:
        raise ValueError(f"value {value!r} encodes to the not-implemented sentinel {spec.sentinel:#x}")
    return _bytes_to_registers(data, spec)
