"""The profile a simulated device serves, by profile name: bundled vendor profiles, or SunSpec
profiles from ``drivers.sunspec`` (imported only when asked for, and optional)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from drivers.modbus.profile import Profile
from drivers.profiles import get_profile
from drivers.sim.register_server import RegisterServer

Installer = Callable[[RegisterServer], None]
"""Writes a device's fixed register image (e.g. the SunSpec header and model chain)."""


class ProfileUnavailable(Exception):
    """No profile of that name can be served here; the message says why in one line."""


def _sunspec() -> Any:
    try:
        module = importlib.import_module("drivers.sunspec")
    except ImportError as exc:
        raise ProfileUnavailable(f"SunSpec profiles are not available ({exc})") from None
    for attr in ("SUNSPEC_PROFILE_NAMES", "standard_profile", "install_image"):
        if not hasattr(module, attr):
            raise ProfileUnavailable(f"SunSpec profiles are not available (drivers.sunspec has no {attr})")
    return module


def profile_for_device(name: str) -> tuple[Profile, Installer | None]:
    """The profile called ``name`` and, for SunSpec profiles, the installer of its model chain.

    Raises ProfileUnavailable naming the profile when it is neither bundled nor SunSpec.
    """
    try:
        return get_profile(name), None
    except KeyError as exc:
        bundled_problem = str(exc.args[0]) if exc.args else str(exc)
    sunspec = _sunspec_or_explain(name, bundled_problem)
    profile: Profile = sunspec.standard_profile(name)

    def install(server: RegisterServer) -> None:
        sunspec.install_image(server, name)

    return profile, install


def _sunspec_or_explain(name: str, bundled_problem: str) -> Any:
    try:
        sunspec = _sunspec()
    except ProfileUnavailable as exc:
        raise ProfileUnavailable(f"profile {name!r}: not bundled, and {exc}") from None
    if name not in sunspec.SUNSPEC_PROFILE_NAMES:
        raise ProfileUnavailable(f"{bundled_problem}; not a SunSpec profile either")
    return sunspec
