"""SunSpec: model tables as data, discovery of a device's model chain, profiles resolved on it."""

from drivers.sunspec.discovery import (
    BASE_ADDRESSES,
    ModelEntry,
    SunSpecError,
    SunSpecMap,
    discover,
)
from drivers.sunspec.layout import (
    SIM_SCALE_FACTORS,
    STANDARD_CHAINS,
    SUNSPEC_PROFILE_NAMES,
    install_image,
    standard_layout,
    standard_profile,
)
from drivers.sunspec.models import ModelDef, PointDef, model_def, model_defs
from drivers.sunspec.profile_spec import SunSpecProfileSpec, bundled_specs, get_spec, load_spec, resolve

NEVER_ZERO: dict[str, frozenset[str]] = {"sunspec_inverter": frozenset({"power_limit_pct"})}
"""Commands to pass to ``SafeWriter(never_zero=...)``: 0 % would put some inverters in standby."""

__all__ = [
    "BASE_ADDRESSES",
    "NEVER_ZERO",
    "SIM_SCALE_FACTORS",
    "STANDARD_CHAINS",
    "SUNSPEC_PROFILE_NAMES",
    "ModelDef",
    "ModelEntry",
    "PointDef",
    "SunSpecError",
    "SunSpecMap",
    "SunSpecProfileSpec",
    "bundled_specs",
    "discover",
    "get_spec",
    "install_image",
    "load_spec",
    "model_def",
    "model_defs",
    "resolve",
    "standard_layout",
    "standard_profile",
]
