"""SunSpec discovery: find the "SunS" marker and walk the model chain ``[ID, L, data…]``.

Nothing here assumes absolute addresses: every model is found from the one before it, so a
common model (1) declared with L=65 instead of 66 shifts everything after it by one register.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from drivers.modbus.codec import Missing, RegisterSpec, decode
from drivers.modbus.transport import Table, TransportError
from drivers.sunspec.models import ModelDef, model_defs

SUNS = (0x5375, 0x6E53)
"""The marker "SunS" at the base address."""

BASE_ADDRESSES = (40000, 0, 50000)
"""Probed in this order (pysunspec2 uses the same)."""

END_MODEL_ID = 0xFFFF
MAX_MODELS = 100
"""A chain longer than this is taken to be a device answering the same registers at every
address, not a real chain."""

COMMON_STRINGS = ("Mn", "Md", "Opt", "Vr", "SN")


class SunSpecError(Exception):
    """Discovery or resolution failed; the message names the address and the value."""


class ReadTransport(Protocol):
    async def read(self, table: Table, address: int, count: int, unit_id: int) -> list[int]: ...


@dataclass(frozen=True)
class ModelEntry:
    """One model of the chain: ``address`` is its ID register, ``length`` its L."""

    id: int
    address: int
    length: int

    @property
    def definition(self) -> ModelDef | None:
        return model_defs().get(self.id)

    @property
    def name(self) -> str:
        d = self.definition
        return d.name if d is not None else "unknown"

    @property
    def end(self) -> int:
        """Address of the register after the model (the next model's ID)."""
        return self.address + 2 + self.length


@dataclass(frozen=True)
class SunSpecMap:
    """A device's model chain.

    ``common`` holds the common model's strings (Mn manufacturer, Md model, SN serial, Opt, Vr)
    that were read; ``scale_factors`` the scale-factor exponents read during discovery, keyed by
    (model address, point name), used to scale commands (see :func:`drivers.sunspec.profile_spec.resolve`).
    """

    base: int
    models: tuple[ModelEntry, ...]
    common: Mapping[str, str] = field(default_factory=dict)
    scale_factors: Mapping[tuple[int, str], int] = field(default_factory=dict)

    def find(self, model_id: int) -> ModelEntry | None:
        """The first model with ``model_id`` (None when the device has none)."""
        return next((m for m in self.models if m.id == model_id), None)

    @property
    def end_address(self) -> int:
        """Address of the end marker (0xFFFF)."""
        return self.models[-1].end if self.models else self.base + 2


async def _read(transport: ReadTransport, unit_id: int, address: int, count: int, what: str) -> list[int]:
    try:
        return await transport.read("holding", address, count, unit_id)
    except TransportError as exc:
        reason = f"SunSpec {what} at {address}: {exc.reason}"
        raise TransportError(reason, exc.exception_code, exc.kind) from None


async def find_base(transport: ReadTransport, unit_id: int, bases: Sequence[int] = BASE_ADDRESSES) -> int:
    """The first of ``bases`` holding "SunS". A Modbus exception answer moves on to the next base;
    any other transport failure raises TransportError."""
    tried: list[str] = []
    for base in bases:
        try:
            regs = await transport.read("holding", base, 2, unit_id)
        except TransportError as exc:
            if exc.exception_code is None:
                raise TransportError(f"SunSpec probe at {base}: {exc.reason}") from None
            tried.append(f"{base}: {exc.reason}")
            continue
        if tuple(regs) == SUNS:
            return base
        tried.append(f"{base}: got {' '.join(f'0x{r:04X}' for r in regs)}")
    raise SunSpecError("no SunSpec marker 'SunS' (0x5375 0x6E53) found; " + "; ".join(tried))


def _check_length(model_id: int, address: int, length: int) -> None:
    if length == 0:
        raise SunSpecError(f"model {model_id} at {address}: bad length L=0")
    if address + 2 + length > 65536:
        raise SunSpecError(
            f"model {model_id} at {address}: length L={length} runs past register 65535"
        )
    d = model_defs().get(model_id)
    if d is None:
        return
    mandatory_end = max((p.offset + p.size - 2 for p in d.points if p.mandatory), default=0)
    if length < mandatory_end:
        raise SunSpecError(
            f"model {model_id} at {address}: bad length L={length}, its mandatory points need {mandatory_end}"
        )
    if d.repeating is not None and length >= d.fixed_length:
        extra = length - d.fixed_length
        if extra % d.repeating.length:
            raise SunSpecError(
                f"model {model_id} at {address}: bad length L={length}, not {d.fixed_length} "
                f"+ n × {d.repeating.length}"
            )


async def walk(transport: ReadTransport, unit_id: int, base: int) -> tuple[ModelEntry, ...]:
    """The models after the marker at ``base`` up to the end marker 0xFFFF (with or without the
    length register after it)."""
    models: list[ModelEntry] = []
    address = base + 2
    while True:
        if address > 65534:
            raise SunSpecError(
                f"model chain runs past register 65535 (next model at {address}), no end marker"
            )
        try:
            model_id, length = await _read(transport, unit_id, address, 2, "model header")
        except TransportError as exc:
            # Some devices end the chain with 0xFFFF alone, without the length register after it:
            # reading both registers there gets an exception (or a short reply), the ID alone does.
            if exc.kind not in ("exception", "length"):
                raise
            try:
                (model_id,) = await _read(transport, unit_id, address, 1, "model id")
            except TransportError:
                raise exc from None
            if model_id == END_MODEL_ID:
                return tuple(models)
            raise
        if model_id == END_MODEL_ID:
            return tuple(models)
        if model_id == 0:
            raise SunSpecError(f"model id 0 at {address} (L={length}): no end marker 0xFFFF")
        if len(models) >= MAX_MODELS:
            raise SunSpecError(
                f"more than {MAX_MODELS} models, the chain does not end (model {model_id} at {address})"
            )
        _check_length(model_id, address, length)
        models.append(ModelEntry(model_id, address, length))
        address += 2 + length


async def _read_common(transport: ReadTransport, unit_id: int, entry: ModelEntry) -> dict[str, str]:
    d = entry.definition
    if d is None:
        return {}
    count = min(entry.length, 125)
    regs = await _read(transport, unit_id, entry.address + 2, count, "common model")
    out: dict[str, str] = {}
    for name in COMMON_STRINGS:
        p = d.point(name)
        start = p.offset - 2
        if start + p.size > count:
            continue
        value = decode(regs[start : start + p.size], RegisterSpec("string", count=p.size, sentinel=0))
        if isinstance(value, str):
            out[name] = value
    return out


async def _read_scale_factors(
    transport: ReadTransport, unit_id: int, entry: ModelEntry
) -> dict[tuple[int, str], int]:
    d = entry.definition
    if d is None:
        return {}
    sfs = [p for p in d.points if p.type == "sunssf" and p.offset + p.size - 2 <= entry.length]
    out: dict[tuple[int, str], int] = {}
    i = 0
    while i < len(sfs):
        first = sfs[i].offset
        group = [p for p in sfs[i:] if p.offset - first < 125]
        span = group[-1].offset - first + 1
        regs = await _read(transport, unit_id, entry.address + first, span, f"model {entry.id} scale factors")
        for p in group:
            value = decode([regs[p.offset - first]], RegisterSpec("int16", sentinel=0x8000))
            if not isinstance(value, Missing | str):
                out[(entry.address, p.name)] = int(value)
        i += len(group)
    return out


async def discover(
    transport: ReadTransport, unit_id: int, bases: Sequence[int] = BASE_ADDRESSES
) -> SunSpecMap:
    """Find the marker, walk the chain, read the common model's strings and every scale factor.

    Raises :class:`SunSpecError` for a missing marker or a broken chain and
    :class:`~drivers.modbus.transport.TransportError` when the device cannot be read.
    """
    base = await find_base(transport, unit_id, bases)
    models = await walk(transport, unit_id, base)
    common: dict[str, str] = {}
    scale_factors: dict[tuple[int, str], int] = {}
    for entry in models:
        if entry.id == 1 and not common:
            common = await _read_common(transport, unit_id, entry)
        scale_factors.update(await _read_scale_factors(transport, unit_id, entry))
    return SunSpecMap(base, models, common, scale_factors)
