"""Bundled device profiles (register maps) as TOML files."""

from pathlib import Path

PROFILES_DIR = Path(__file__).parent
