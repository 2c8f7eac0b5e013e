"""Bundled device profiles (register maps) as TOML files, looked up by profile name."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from drivers.modbus.profile import Profile, load_profiles

PROFILES_DIR = Path(__file__).parent


@cache
def bundled_profiles() -> dict[str, Profile]:
    """Every bundled profile by name (loaded and validated once)."""
    return load_profiles(PROFILES_DIR)


def get_profile(name: str) -> Profile:
    """The bundled profile called ``name``; an unknown name raises KeyError listing the known ones."""
    profiles = bundled_profiles()
    if name not in profiles:
        raise KeyError(f"profile: no bundled profile {name!r}; known: {', '.join(sorted(profiles))}")
    return profiles[name]
