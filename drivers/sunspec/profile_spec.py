"""SunSpec profile files and their resolution into ordinary :class:`Profile` objects.

A SunSpec profile (``drivers/sunspec/profiles/*.toml``) names models by alias (``[models]``, each a
list of model ids; the first one the device has is used) and the points and commands it wants by
SunSpec point name. :func:`resolve` places them at the absolute addresses of one device's
:class:`SunSpecMap`, so the generic driver (ProfileDevice, SafeWriter, plan_reads) runs them.

Scaling: a point with a scale-factor point reads that register in the same poll (value = raw ×
10^SF). A command cannot do that while writing, so its scale factor is read during discovery
(``SunSpecMap.scale_factors``) and baked into the command's ``scale``; SunSpec scale factors of
control models are static. A command whose scale factor the device does not implement is an error.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drivers.modbus.codec import DataType, is_float_type, sunspec_sentinel
from drivers.modbus.profile import ENERGY_UNITS, Command, DeviceKind, Point, Profile, ProfileError
from drivers.sunspec.discovery import ModelEntry, SunSpecError, SunSpecMap
from drivers.sunspec.models import ModelDef, PointDef

SPEC_DIR = Path(__file__).with_name("profiles")

DEFAULT_MAX_READ_GAP = 32
"""Registers inside a SunSpec model chain are all defined (unused ones hold sentinels), so reads
may bridge wider gaps than for vendor maps."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PointSpec(_Frozen):
    """A point by SunSpec name; ``module`` (1-based) selects a module of a repeating group."""

    model: str
    point: str
    module: int | None = Field(default=None, ge=1)
    valid_range: tuple[float, float] | None = None
    description: str = ""


class CommandSpec(_Frozen):
    """A writable SunSpec point; ``limits`` are in engineering units (after the scale factor)."""

    model: str
    point: str
    limits: tuple[float, float] | None = None
    keepalive_s: float | None = None
    watchdog_s: float | None = None
    fallback_value: float | None = None
    readback: bool = False
    processing_delay_s: float = Field(default=0.0, ge=0.0)
    description: str = ""


class SunSpecProfileSpec(_Frozen):
    name: str
    vendor: str
    model: str
    kind: DeviceKind
    unit_id: int = Field(default=1, ge=0, le=255)
    description: str = ""
    max_read_gap: int = Field(default=DEFAULT_MAX_READ_GAP, ge=0)
    models: dict[str, list[int]]
    points: dict[str, PointSpec] = Field(default_factory=dict)
    commands: dict[str, CommandSpec] = Field(default_factory=dict)


def load_spec(path: str | Path) -> SunSpecProfileSpec:
    """Read one SunSpec profile file; problems raise ProfileError naming the file and field."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError([f"{path}: cannot read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError([f"{path}: not valid TOML: {exc}"]) from None
    try:
        return SunSpecProfileSpec.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{path}: {'.'.join(str(x) for x in e['loc'])}: {e['msg']}, got {e.get('input')!r}"
            for e in exc.errors()
        ]
        raise ProfileError(lines) from None


@cache
def bundled_specs() -> dict[str, SunSpecProfileSpec]:
    """Every bundled SunSpec profile spec by its (resolved profile) name."""
    specs = (load_spec(p) for p in sorted(SPEC_DIR.glob("*.toml")))
    return {s.name: s for s in specs}


def get_spec(name: str) -> SunSpecProfileSpec:
    specs = bundled_specs()
    if name not in specs:
        raise KeyError(f"no SunSpec profile {name!r}; known: {', '.join(sorted(specs))}")
    return specs[name]


def normalise_unit(units: str | None) -> str | None:
    """SunSpec units in the project's spelling (Pct, %WHRtg → %; Secs → s; C → °C)."""
    if units is None:
        return None
    text = units.strip()
    if text == "Pct" or text.startswith("%"):
        return "%"
    return {"Secs": "s", "C": "°C", "Var": "var", "VAr": "var", "cos()": None}.get(text, text)


def _entry(spec: SunSpecProfileSpec, where: str, alias: str, smap: SunSpecMap) -> ModelEntry:
    ids = spec.models.get(alias)
    if ids is None:
        raise SunSpecError(f"{spec.name}: {where}: model: no alias {alias!r} in [models]")
    for model_id in ids:
        entry = smap.find(model_id)
        if entry is not None:
            if entry.definition is None:
                raise SunSpecError(f"{spec.name}: {where}: model {model_id} has no bundled definition")
            return entry
    found = ", ".join(str(m.id) for m in smap.models) or "none"
    raise SunSpecError(
        f"{spec.name}: {where}: the device has none of models {ids} ({alias}); its models: {found}"
    )


def _place(spec: SunSpecProfileSpec, where: str, entry: ModelEntry, name: str,
           module: int | None) -> tuple[PointDef, int]:
    """The point's definition and absolute address; checks it lies inside the model's L."""
    d = entry.definition
    assert d is not None
    if module is None:
        try:
            pdef = d.point(name)
        except KeyError as exc:
            raise SunSpecError(f"{spec.name}: {where}: point: {exc.args[0]}") from None
        offset = pdef.offset
    else:
        if d.repeating is None:
            raise SunSpecError(
                f"{spec.name}: {where}: module: model {d.id} has no repeating group, got {module}"
            )
        try:
            pdef = d.repeating.point(name)
        except KeyError as exc:
            raise SunSpecError(f"{spec.name}: {where}: point: {exc.args[0]}") from None
        modules = max(0, entry.length - d.fixed_length) // d.repeating.length
        if module > modules:
            raise SunSpecError(
                f"{spec.name}: {where}: module: model {d.id} at {entry.address} has {modules} module(s), "
                f"got {module}"
            )
        offset = 2 + d.fixed_length + (module - 1) * d.repeating.length + pdef.offset
    if offset + pdef.size - 2 > entry.length:
        raise SunSpecError(
            f"{spec.name}: {where}: point {name} (+{offset}, {pdef.size} registers) lies beyond "
            f"model {d.id} at {entry.address} with L={entry.length}"
        )
    if pdef.codec_type is None:
        raise SunSpecError(f"{spec.name}: {where}: point {name}: SunSpec type {pdef.type} cannot be decoded")
    return pdef, entry.address + offset


def _sf_point(
    d: ModelDef, entry: ModelEntry, spec: SunSpecProfileSpec, where: str, sf: str
) -> tuple[int, str]:
    pdef = d.point(sf)
    if pdef.offset - 1 > entry.length:
        raise SunSpecError(
            f"{spec.name}: {where}: scale factor {sf} (+{pdef.offset}) lies beyond model {d.id} "
            f"at {entry.address} with L={entry.length}"
        )
    return entry.address + pdef.offset, pdef.label or f"scale factor {sf}"


def _sentinel(pdef: PointDef) -> int | Literal["sunspec"] | None:
    ctype = pdef.codec_type
    assert ctype is not None
    if is_float_type(ctype) or pdef.sentinel is None:
        return None
    return "sunspec" if pdef.sentinel == sunspec_sentinel(ctype) else pdef.sentinel


def _default_range(unit: str | None, ctype: DataType) -> tuple[float, float] | None:
    """A percentage lies within 0..100 % (−100..100 % when signed) unless the spec says otherwise."""
    if unit != "%":
        return None
    return (0.0, 100.0) if ctype.startswith("uint") else (-100.0, 100.0)


def resolve(spec: SunSpecProfileSpec, smap: SunSpecMap) -> Profile:
    """``spec`` placed on the device described by ``smap``: an ordinary Profile."""
    points: dict[str, Point] = {}
    commands: dict[str, Command] = {}
    for name, ps in spec.points.items():
        where = f"points.{name}"
        entry = _entry(spec, where, ps.model, smap)
        d = entry.definition
        assert d is not None
        pdef, address = _place(spec, where, entry, ps.point, ps.module)
        ctype = pdef.codec_type
        assert ctype is not None
        sf_name: str | None = None
        if pdef.sf is not None:
            sf_name = f"{ps.model}_{pdef.sf}"
            sf_address, sf_label = _sf_point(d, entry, spec, where, pdef.sf)
            if sf_name not in points:
                points[sf_name] = Point(
                    address=sf_address, table="holding", type="int16", sentinel="sunspec",
                    description=f"{d.id}.{pdef.sf}: {sf_label} (10^n)",
                )
        module = f"[{ps.module}]" if ps.module is not None else ""
        unit = normalise_unit(pdef.units)
        description = ps.description or pdef.label
        if name in points:
            raise SunSpecError(f"{spec.name}: {where}: name clashes with a scale-factor point")
        points[name] = Point(
            address=address,
            table="holding",
            type=ctype,
            count=pdef.size if ctype == "string" else None,
            scale=None if pdef.sf_value is None else 10.0**pdef.sf_value,
            scale_factor_point=sf_name,
            unit=unit,
            sentinel=_sentinel(pdef),
            valid_range=ps.valid_range or _default_range(unit, ctype),
            monotonic=pdef.type.startswith("acc") and unit in ENERGY_UNITS,
            description=f"{d.id}.{ps.point}{module}: {description}",
        )
    for name, cs in spec.commands.items():
        where = f"commands.{name}"
        entry = _entry(spec, where, cs.model, smap)
        d = entry.definition
        assert d is not None
        pdef, address = _place(spec, where, entry, cs.point, None)
        ctype = pdef.codec_type
        assert ctype is not None
        if not pdef.writable:
            raise SunSpecError(f"{spec.name}: {where}: point {d.id}.{cs.point} is read-only")
        scale: float | None = None
        command_sf_address: int | None = None
        if pdef.sf is not None:
            command_sf_address = _sf_point(d, entry, spec, where, pdef.sf)[0]
            sf = smap.scale_factors.get((entry.address, pdef.sf))
            if sf is None:
                raise SunSpecError(
                    f"{spec.name}: {where}: scale factor {d.id}.{pdef.sf} at "
                    f"{entry.address + d.point(pdef.sf).offset} was not read or is not implemented"
                )
            scale = None if sf == 0 else 10.0**sf
        commands[name] = Command(
            address=address,
            type=ctype,
            scale=scale,
            scale_factor_address=command_sf_address,
            unit=normalise_unit(pdef.units),
            limits=cs.limits,
            keepalive_s=cs.keepalive_s,
            watchdog_s=cs.watchdog_s,
            fallback_value=cs.fallback_value,
            readback=cs.readback,
            processing_delay_s=cs.processing_delay_s,
            description=f"{d.id}.{cs.point}: {cs.description or pdef.label}",
        )
    try:
        return Profile(
            name=spec.name,
            vendor=spec.vendor,
            model=spec.model,
            kind=spec.kind,
            unit_id=spec.unit_id,
            max_read_gap=spec.max_read_gap,
            description=spec.description,
            points=points,
            commands=commands,
        )
    except ValidationError as exc:
        raise SunSpecError(f"{spec.name}: resolved profile is invalid: {exc}") from None


def resolve_named(name: str, smap: SunSpecMap) -> Profile:
    """The bundled SunSpec profile ``name`` resolved on ``smap``."""
    return resolve(get_spec(name), smap)
