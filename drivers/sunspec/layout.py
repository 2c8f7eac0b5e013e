"""The register images our simulators serve for the SunSpec profiles.

:func:`standard_layout` is the model chain, :func:`standard_profile` the profile resolved on it
with the simulator's scale factors, :func:`install_image` writes the image into a
:class:`~drivers.sim.register_server.RegisterServer`: "SunS", every model's ID and L, the common
model's strings, the scale factors, "not implemented" sentinels for every point nobody
publishes, and the end marker 0xFFFF, 0. Values are then published with ``server.set_point``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from drivers.modbus.codec import RegisterSpec, encode
from drivers.modbus.profile import Profile
from drivers.sim.register_server import RegisterServer
from drivers.sunspec.discovery import END_MODEL_ID, SUNS, ModelEntry, SunSpecMap
from drivers.sunspec.models import PointDef, model_def
from drivers.sunspec.profile_spec import get_spec, resolve

SUNSPEC_PROFILE_NAMES: tuple[str, ...] = ("sunspec_inverter", "sunspec_battery", "sunspec_meter")

STANDARD_CHAINS: dict[str, tuple[int, ...]] = {
    "sunspec_inverter": (1, 103, 120, 121, 123, 160),
    "sunspec_battery": (1, 701, 704, 802),
    "sunspec_meter": (1, 203),
}
"""Model ids the simulator serves, in chain order, per profile."""

MPPT_MODULES = 2
"""Model 160 modules (PV strings) the inverter simulator serves."""

ScaleFactors = Mapping[int, Mapping[str, int]]
"""Scale-factor exponents by model id and scale-factor point name."""

SIM_SCALE_FACTORS: ScaleFactors = {
    103: {"A_SF": -1, "V_SF": -1, "W_SF": 2, "Hz_SF": -2, "VA_SF": 2, "VAr_SF": 2, "PF_SF": -2, "DCW_SF": 2,
          "Tmp_SF": -1},
    120: {"WRtg_SF": 2, "VARtg_SF": 2, "ARtg_SF": -1, "WHRtg_SF": 2, "MaxChaRte_SF": 2, "MaxDisChaRte_SF": 2},
    121: {"WMax_SF": 2, "VRef_SF": -1, "VAMax_SF": 2, "VArMax_SF": 2},
    123: {"WMaxLimPct_SF": -1},
    160: {"DCA_SF": -1, "DCV_SF": -1, "DCW_SF": 2},
    203: {"A_SF": -1, "V_SF": -1, "Hz_SF": -2, "W_SF": 2, "VA_SF": 2, "VAR_SF": 2, "PF_SF": -2},
    701: {"A_SF": -1, "V_SF": -1, "Hz_SF": -2, "W_SF": 2, "PF_SF": -2, "VA_SF": 2, "Var_SF": 2, "Tmp_SF": -1},
    802: {"SoC_SF": -1, "SoH_SF": -1, "V_SF": -1, "CellV_SF": -3, "A_SF": -1, "W_SF": 2, "WHRtg_SF": 2,
          "WChaDisChaMax_SF": 2},
}
"""Scale-factor exponents the simulators serve (those not listed are 0): W at 100 W resolution
(int16 then reaches ±3.27 MW, enough for a C&I site), V and A at 0.1, Hz at 0.01, limit % at 0.1."""

SIM_COMMON = {"Mn": "EMS Simulator", "SN": "SIM-0001"}

SIM_DEFAULTS: dict[str, dict[str, float]] = {
    "sunspec_inverter": {"power_limit_pct": 100.0, "power_limit_enable": 0, "power_limit_timeout_s": 0},
    "sunspec_battery": {
        "power_setpoint_w": 0,
        "power_setpoint_enable": 0,
        "power_setpoint_mode": 1,
        "power_setpoint_timeout_s": 0,
        "control_heartbeat": 0,
    },
    "sunspec_meter": {},
}
"""Control registers start as a device fresh from the factory: no limit, no setpoint."""

_NAN = {"float32": [0x7FC0, 0x0000], "float64": [0x7FF8, 0, 0, 0]}


def _check_name(name: str) -> None:
    if name not in STANDARD_CHAINS:
        raise KeyError(f"no SunSpec simulator layout {name!r}; known: {', '.join(SUNSPEC_PROFILE_NAMES)}")


def _length(model_id: int, common_length: int) -> int:
    if model_id == 1:
        if common_length not in (65, 66):
            raise ValueError(f"common_length must be 65 or 66, got {common_length}")
        return common_length
    d = model_def(model_id)
    return d.fixed_length + (MPPT_MODULES * d.repeating.length if d.repeating is not None else 0)


def standard_layout(
    name: str, base: int = 40000, common_length: int = 66, *, scale_factors: ScaleFactors | None = None
) -> SunSpecMap:
    """The model chain the simulator serves for profile ``name`` starting at ``base``;
    ``scale_factors`` replaces :data:`SIM_SCALE_FACTORS`."""
    sim_sfs = SIM_SCALE_FACTORS if scale_factors is None else scale_factors
    _check_name(name)
    models: list[ModelEntry] = []
    address = base + 2
    for model_id in STANDARD_CHAINS[name]:
        entry = ModelEntry(model_id, address, _length(model_id, common_length))
        models.append(entry)
        address = entry.end
    if address + 1 > 65535:
        raise ValueError(f"{name}: a chain at base {base} runs past register 65535")
    sfs: dict[tuple[int, str], int] = {}
    for entry in models:
        for p in model_def(entry.id).points:
            if p.type == "sunssf" and p.offset - 1 <= entry.length:
                sfs[(entry.address, p.name)] = sim_sfs.get(entry.id, {}).get(p.name, 0)
    common = {**SIM_COMMON, "Md": name}
    return SunSpecMap(base, tuple(models), common, sfs)


def standard_profile(
    name: str, base: int = 40000, common_length: int = 66, *, scale_factors: ScaleFactors | None = None
) -> Profile:
    """``resolve(spec, standard_layout(...))``: the profile of the simulator for ``name``."""
    return resolve(get_spec(name), standard_layout(name, base, common_length, scale_factors=scale_factors))


def _sentinel_words(p: PointDef) -> list[int]:
    if p.type in _NAN:
        return list(_NAN[p.type])
    if p.type == "pad":
        return [0x8000] * p.size
    value = p.sentinel or 0
    return [(value >> (16 * (p.size - 1 - i))) & 0xFFFF for i in range(p.size)]


def _string(text: str, size: int) -> list[int]:
    return encode(text, RegisterSpec("string", count=size))


def _model_image(entry: ModelEntry, smap: SunSpecMap) -> list[int]:
    d = model_def(entry.id)
    words = [entry.id, entry.length] + [0] * entry.length

    def put(offset: int, values: list[int]) -> None:
        for i, v in enumerate(values):
            if offset + i < len(words):
                words[offset + i] = v

    for p in d.points:
        put(p.offset, _sentinel_words(p))
        if p.type == "sunssf" and (entry.address, p.name) in smap.scale_factors:
            sf = smap.scale_factors[(entry.address, p.name)]
            put(p.offset, list(struct.unpack(">H", struct.pack(">h", sf))))
        elif entry.id == 1 and p.name in smap.common:
            put(p.offset, _string(smap.common[p.name], p.size))
    if d.repeating is not None:
        modules = (entry.length - d.fixed_length) // d.repeating.length
        if d.repeating.count_point is not None:
            put(d.point(d.repeating.count_point).offset, [modules])
        for k in range(modules):
            start = 2 + d.fixed_length + k * d.repeating.length
            for p in d.repeating.points:
                put(start + p.offset, [k + 1] if p.name == "ID" else _sentinel_words(p))
    return words


def install_image(
    server: RegisterServer,
    name: str,
    base: int = 40000,
    common_length: int = 66,
    *,
    scale_factors: ScaleFactors | None = None,
) -> None:
    """Write the simulator's SunSpec image for ``name`` into ``server``'s holding registers."""
    smap = standard_layout(name, base, common_length, scale_factors=scale_factors)
    server.set_registers("holding", base, list(SUNS))
    for entry in smap.models:
        server.set_registers("holding", entry.address, _model_image(entry, smap))
    server.set_registers("holding", smap.end_address, [END_MODEL_ID, 0])
    profile = resolve(get_spec(name), smap)
    for point, value in SIM_DEFAULTS[name].items():
        registers = encode_point(profile, smap, point, value)
        server.set_registers("holding", profile.points[point].address, registers)


def encode_point(profile: Profile, smap: SunSpecMap, point: str, value: float | str) -> list[int]:
    """Registers holding ``value`` for ``point``, with the scale factor ``smap`` gives it."""
    sf: int | None = None
    sf_point = profile.points[point].scale_factor_point
    if sf_point is not None:
        address = profile.points[sf_point].address
        sf = next(
            v for (model_address, sf_name), v in smap.scale_factors.items()
            if model_address + _offset(smap, model_address, sf_name) == address
        )
    return encode(value, profile.point_spec(point), sf)


def _offset(smap: SunSpecMap, model_address: int, point: str) -> int:
    entry = next(m for m in smap.models if m.address == model_address)
    return model_def(entry.id).point(point).offset
