import math
import re
import struct
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client.mixin import ModbusClientMixin

from drivers.modbus.codec import (
    SUNSPEC_SENTINELS,
    Missing,
    RegisterSpec,
    decode,
    encode,
    raw_range,
)

INT_TYPES = ["int16", "uint16", "int32", "uint32"]
WORD_ORDERS = ["big", "little"]
BYTE_ORDERS = ["big", "little"]
PYMODBUS_TYPE = {
    "int16": ModbusClientMixin.DATATYPE.INT16,
    "uint16": ModbusClientMixin.DATATYPE.UINT16,
    "int32": ModbusClientMixin.DATATYPE.INT32,
    "uint32": ModbusClientMixin.DATATYPE.UINT32,
    "float32": ModbusClientMixin.DATATYPE.FLOAT32,
    "float64": ModbusClientMixin.DATATYPE.FLOAT64,
}


def _int_values(dtype: str) -> st.SearchStrategy[int]:
    lo, hi = raw_range(dtype)  # type: ignore[arg-type]
    return st.integers(int(lo), int(hi))


@pytest.mark.parametrize("byte_order", BYTE_ORDERS)
@pytest.mark.parametrize("word_order", WORD_ORDERS)
@pytest.mark.parametrize("dtype", INT_TYPES)
@given(data=st.data())
def test_int_round_trip(dtype: str, word_order: str, byte_order: str, data: st.DataObject) -> None:
    spec = RegisterSpec(dtype, word_order=word_order, byte_order=byte_order)  # type: ignore[arg-type]
    value = data.draw(_int_values(dtype))
    regs = encode(value, spec)
    assert len(regs) == spec.width
    assert all(0 <= r <= 0xFFFF for r in regs)
    decoded = decode(regs, spec)
    assert decoded == value and isinstance(decoded, int)


@pytest.mark.parametrize("word_order", WORD_ORDERS)
@pytest.mark.parametrize("dtype", INT_TYPES)
@given(data=st.data())
def test_int_scaled_round_trip(dtype: str, word_order: str, data: st.DataObject) -> None:
    scale = data.draw(st.sampled_from([0.1, 0.01, 10.0, -0.5]))
    spec = RegisterSpec(dtype, word_order=word_order, scale=scale)  # type: ignore[arg-type]
    raw = data.draw(_int_values(dtype))
    regs = encode(raw * scale, spec)
    assert decode(regs, RegisterSpec(dtype, word_order=word_order)) == raw  # type: ignore[arg-type]
    assert decode(regs, spec) == pytest.approx(raw * scale, rel=1e-12)


@pytest.mark.parametrize("word_order", WORD_ORDERS)
@given(raw=st.integers(-32767, 32767), sf=st.integers(-6, 6))
def test_int16_scale_factor_round_trip(word_order: str, raw: int, sf: int) -> None:
    spec = RegisterSpec("int16", word_order=word_order, sentinel=SUNSPEC_SENTINELS["int16"])  # type: ignore[arg-type]
    value = decode(encode(raw * 10.0**sf, spec, sf=sf), spec, sf=sf)
    assert isinstance(value, float)
    assert value == pytest.approx(raw * 10.0**sf, rel=1e-12)


@pytest.mark.parametrize("byte_order", BYTE_ORDERS)
@pytest.mark.parametrize("word_order", WORD_ORDERS)
@given(value=st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float32_round_trip(word_order: str, byte_order: str, value: float) -> None:
    spec = RegisterSpec("float32", word_order=word_order, byte_order=byte_order)  # type: ignore[arg-type]
    assert decode(encode(value, spec), spec) == value


@pytest.mark.parametrize("byte_order", BYTE_ORDERS)
@pytest.mark.parametrize("word_order", WORD_ORDERS)
@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_float64_round_trip(word_order: str, byte_order: str, value: float) -> None:
    spec = RegisterSpec("float64", word_order=word_order, byte_order=byte_order)  # type: ignore[arg-type]
    assert decode(encode(value, spec), spec) == value


@pytest.mark.parametrize("word_order", WORD_ORDERS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@given(data=st.data())
def test_float_scaled_round_trip(dtype: str, word_order: str, data: st.DataObject) -> None:
    spec = RegisterSpec(dtype, word_order=word_order, scale=0.001)  # type: ignore[arg-type]
    value = data.draw(st.floats(-1e6, 1e6, width=32))
    assert decode(encode(value, spec), spec) == pytest.approx(value, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("word_order", WORD_ORDERS)
@pytest.mark.parametrize("dtype", list(PYMODBUS_TYPE))
@given(data=st.data())
def test_agrees_with_pymodbus(dtype: str, word_order: str, data: st.DataObject) -> None:
    """pymodbus's own converters are an independent oracle for the big-endian byte layout."""
    if dtype in INT_TYPES:
        value: float = data.draw(_int_values(dtype))
    else:
        width: Literal[32, 64] = 32 if dtype == "float32" else 64
        value = data.draw(st.floats(allow_nan=False, allow_infinity=False, width=width))
    spec = RegisterSpec(dtype, word_order=word_order)  # type: ignore[arg-type]
    ours = encode(value, spec)
    pm_type = PYMODBUS_TYPE[dtype]
    theirs = ModbusClientMixin.convert_to_registers(value, pm_type, word_order=word_order)  # type: ignore[arg-type]
    assert ours == theirs
    back = ModbusClientMixin.convert_from_registers(ours, pm_type, word_order=word_order)  # type: ignore[arg-type]
    assert back == value


@pytest.mark.parametrize("byte_order", BYTE_ORDERS)
@given(text=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=16),
       count=st.integers(8, 12))
def test_string_round_trip(byte_order: str, text: str, count: int) -> None:
    spec = RegisterSpec("string", count=count, byte_order=byte_order)  # type: ignore[arg-type]
    regs = encode(text, spec)
    assert len(regs) == count
    assert decode(regs, spec) == text.rstrip(" ")


def test_string_padding_nul_and_space() -> None:
    spec = RegisterSpec("string", count=4)
    # "SDM630" followed by NUL padding, and the same with space padding.
    nul = [0x5344, 0x4D36, 0x3330, 0x0000]
    space = [0x5344, 0x4D36, 0x3330, 0x2020]
    assert decode(nul, spec) == "SDM630"
    assert decode(space, spec) == "SDM630"
    assert encode("SDM630", spec) == nul
    assert encode("AB", spec) == [0x4142, 0, 0, 0]
    assert decode([0x4142, 0x0043, 0, 0], spec) == "AB"  # stops at the first NUL


def test_string_too_long_or_not_ascii() -> None:
    spec = RegisterSpec("string", count=2)
    with pytest.raises(ValueError, match="'ABCDE'"):
        encode("ABCDE", spec)
    with pytest.raises(ValueError, match="not ASCII"):
        encode("Ünit", spec)
    assert isinstance(decode([0xC3A4, 0], spec), Missing)


def test_all_zero_string_is_missing_with_sunspec_sentinel() -> None:
    spec = RegisterSpec("string", count=3, sentinel=SUNSPEC_SENTINELS["string"])
    result = decode([0, 0, 0], spec)
    assert isinstance(result, Missing) and "not implemented" in result.reason
    assert decode([0, 0, 0], RegisterSpec("string", count=3)) == ""


@pytest.mark.parametrize(
    ("dtype", "word_order", "registers", "shown"),
    [
        ("int16", "big", [0x8000], "0x8000"),
        ("uint16", "big", [0xFFFF], "0xffff"),
        ("int32", "big", [0x8000, 0x0000], "0x80000000"),
        ("int32", "little", [0x0000, 0x8000], "0x80000000"),
        ("uint32", "big", [0xFFFF, 0xFFFF], "0xffffffff"),
    ],
)
def test_sunspec_sentinels_are_missing(dtype: str, word_order: str, registers: list[int], shown: str) -> None:
    spec = RegisterSpec(dtype, word_order=word_order, sentinel=SUNSPEC_SENTINELS[dtype])  # type: ignore[arg-type]
    result = decode(registers, spec)
    assert result == Missing(f"not implemented (sentinel {shown})")
    # The same image without a declared sentinel is an ordinary value, never silently dropped.
    assert not isinstance(decode(registers, RegisterSpec(dtype, word_order=word_order)), Missing)  # type: ignore[arg-type]


def test_sentinel_is_missing_even_with_scale_factor() -> None:
    spec = RegisterSpec("int16", sentinel=0x8000)
    assert isinstance(decode([0x8000], spec, sf=-2), Missing)


@pytest.mark.parametrize("word_order", WORD_ORDERS)
def test_nan_and_inf_are_missing(word_order: str) -> None:
    nan32 = list(struct.unpack(">HH", struct.pack(">f", math.nan)))
    inf32 = list(struct.unpack(">HH", struct.pack(">f", math.inf)))
    nan64 = list(struct.unpack(">HHHH", struct.pack(">d", math.nan)))
    if word_order == "little":
        nan32.reverse()
        inf32.reverse()
        nan64.reverse()
    f32 = RegisterSpec("float32", word_order=word_order)  # type: ignore[arg-type]
    assert decode(nan32, f32) == Missing("not available (NaN)")
    assert decode(inf32, f32) == Missing("not available (inf)")
    assert decode(nan64, RegisterSpec("float64", word_order=word_order)) == Missing("not available (NaN)")  # type: ignore[arg-type]
    # Alfen-style NaN image 0xFFFF 0xFFFF is a NaN too.
    assert isinstance(decode([0xFFFF, 0xFFFF], f32), Missing)


def test_scale_factor_applied_and_bounded() -> None:
    spec = RegisterSpec("int16")
    assert decode([2301], spec, sf=-1) == 230.1
    assert decode([5], spec, sf=3) == 5000.0
    assert isinstance(decode([5], spec, sf=-32768), Missing)


@pytest.mark.parametrize(
    ("dtype", "value"),
    [("int16", 32768), ("int16", -32769), ("uint16", -1), ("uint16", 65536), ("int32", 2**31),
     ("uint32", 2**32), ("float32", 1e39), ("int16", math.nan), ("uint16", math.inf)],
)
def test_encode_refuses_values_that_do_not_fit(dtype: str, value: float) -> None:
    with pytest.raises(ValueError, match=re.escape(f"value {value!r}")):
        encode(value, RegisterSpec(dtype))  # type: ignore[arg-type]


def test_encode_scaled_out_of_range_and_sentinel_collision() -> None:
    with pytest.raises(ValueError, match=r"value 3276\.8"):
        encode(3276.8, RegisterSpec("int16", scale=0.1))
    with pytest.raises(ValueError, match="sentinel"):
        encode(65535, RegisterSpec("uint16", sentinel=0xFFFF))
    with pytest.raises(ValueError, match="not a number"):
        encode("12", RegisterSpec("uint16"))


def test_decode_rejects_wrong_register_count_and_bad_words() -> None:
    with pytest.raises(ValueError, match="needs 2 register"):
        decode([1], RegisterSpec("float32"))
    with pytest.raises(ValueError, match="70000"):
        decode([70000], RegisterSpec("uint16"))


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="count"):
        RegisterSpec("string")
    with pytest.raises(ValueError, match="scale"):
        RegisterSpec("int16", scale=0.0)
    with pytest.raises(ValueError, match="sentinel"):
        RegisterSpec("int16", sentinel=0x10000)
