"""Read a site TOML file, apply command-line overrides, validate, and report errors clearly."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ems.config.models import FIELD_PROBLEMS, SiteConfig

SITE_DIR = Path(__file__).resolve().parents[2] / "site_configs"


class ConfigError(Exception):
    """Invalid configuration; `lines` holds one message per problem, each naming field and value."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass(frozen=True)
class LoadedSite:
    config: SiteConfig
    path: Path

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, file: str) -> Path:
        p = Path(file)
        return p if p.is_absolute() else self.base_dir / p


def find_site(name_or_path: str) -> Path:
    """A path to a TOML file, or the name of a bundled site (site_configs/NAME.toml)."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.exists():
            raise ConfigError([f"{p}: no such file"])
        return p
    bundled = SITE_DIR / f"{name_or_path}.toml"
    if bundled.exists():
        return bundled
    known = sorted(f.stem for f in SITE_DIR.glob("*.toml"))
    raise ConfigError([
        f"site {name_or_path!r}: not a file and not a bundled site (bundled: {', '.join(known)})"
    ])


def load_site(name_or_path: str, overrides: list[str] | None = None) -> LoadedSite:
    path = find_site(name_or_path)
    raw = read_toml(path)
    for item in overrides or []:
        apply_override(raw, item)
    try:
        # base_dir: where relative files named inside the config (e.g. a URDB rate) are read from
        config = SiteConfig.model_validate(raw, context={"base_dir": path.resolve().parent})
    except ValidationError as exc:
        raise ConfigError([f"{path}: {line}" for line in format_errors(exc, raw)]) from None
    site = LoadedSite(config=config, path=path.resolve())
    problems = [f"{path}: {p}" for p in file_problems(site)]
    if problems:
        raise ConfigError(problems)
    return site


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML tree of ``path``; a file that cannot be read, is not UTF-8 or not TOML raises
    ConfigError naming the file and where."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError([f"{path}: line {line}: byte {data[exc.start]:#04x} is not UTF-8 "
                           "(TOML files are UTF-8 text; save the file as UTF-8)"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def file_problems(site: LoadedSite) -> list[str]:
    """One line per data file the config names that is missing or is not a file."""
    out = []
    for where, f in data_files(site.config):
        resolved = site.resolve(f)
        if not resolved.exists():
            out.append(f"{where} = {f!r}: file not found (resolved to {resolved})")
        elif not resolved.is_file():
            out.append(f"{where} = {f!r}: not a file (resolved to {resolved}, a directory)"
                       if resolved.is_dir() else f"{where} = {f!r}: not a regular file ({resolved})")
    return out


def data_files(config: SiteConfig) -> list[tuple[str, str]]:
    """(field path, file) for every data file the config refers to."""
    carbon = config.grid.carbon
    out: list[tuple[str, str]] = [
        ("grid.carbon.file" if len(carbon) == 1 else f"grid.carbon[{i}].file", c.file)
        for i, c in enumerate(carbon) if c.file is not None]
    tariffs = (("grid.tariff", config.grid.tariff), ("grid.export_tariff", config.grid.export_tariff))
    for key, tariff in tariffs:
        if tariff.kind == "series":
            out.append((f"{key}.file", tariff.file))
    for i, pv in enumerate(config.pv):
        f = pv.weather_file or pv.series_file
        if f:
            out.append((f"pv[{i}].{'weather_file' if pv.weather_file else 'series_file'}", f))
    for i, ld in enumerate(config.load):
        out.append((f"load[{i}].file", ld.file))
    for i, o in enumerate(config.hydrogen_offtake):
        if o.file:
            out.append((f"hydrogen_offtake[{i}].file", o.file))
    if config.ev_sessions is not None and config.ev_sessions.kind == "file":
        out.append(("ev_sessions.file", config.ev_sessions.file))
    return out


def _lookup(raw: Any, loc: tuple[Any, ...]) -> Any:
    node = raw
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return node


_MISSING = object()


def field_loc(loc: tuple[Any, ...], raw: Any) -> tuple[Any, ...]:
    """The error location without discriminated-union tags: pydantic inserts the tag (the
    table's `kind`) right after the union field, e.g. ("grid", "tariff", "tou", "rules")."""
    out: list[Any] = []
    node, fresh = raw, True
    for part in loc:
        if fresh and isinstance(part, str) and isinstance(node, dict) and node.get("kind") == part:
            fresh = False
            continue
        out.append(part)
        node = _lookup(node, (part,)) if node is not _MISSING else _MISSING
        fresh = True
    return tuple(out)


def format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def format_errors(exc: ValidationError, raw: dict[str, Any]) -> list[str]:
    """One line per error: field path, the bad value, and what was expected."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = field_loc(tuple(err["loc"]), raw)
        field = format_loc(loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            lines.append(f"{field}: missing (required)")
            continue
        if err["type"] == "extra_forbidden":
            lines.append(f"{field} = {err['input']!r}: unknown field (check the spelling)")
            continue
        if err["type"] == FIELD_PROBLEMS:
            for sub, checked, problem in err.get("ctx", {}).get("problems", []):
                found = _lookup(raw, loc + tuple(sub))
                shown = checked if found is _MISSING else found
                lines.append(f"{format_loc(loc + tuple(sub))} = {shown!r}: {problem}")
            continue
        if err["type"] == "union_tag_invalid":
            loc += ("kind",)
            field = format_loc(loc)
        value = _lookup(raw, loc)
        if value is _MISSING or isinstance(value, dict | list):
            lines.append(f"{field}: {msg}")
        else:
            lines.append(f"{field} = {value!r}: {msg}")
    return lines


_PATH = re.compile(r"^([A-Za-z_][\w]*)(?:\[(\d+)\])?$")


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply "a.b=value" to the raw TOML tree.

    A list of tables can be addressed by index (battery[0].capacity_kwh), by asset name
    (battery.bess.capacity_kwh), or not at all (battery.capacity_kwh: every entry).
    The value is read as TOML (numbers, booleans, strings, arrays), else as a string.
    """
    if "=" not in item:
        raise ConfigError([f"--set {item!r}: expected KEY=VALUE"])
    key, text = item.split("=", 1)
    try:
        value: Any = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    parts = key.strip().split(".")
    targets: list[Any] = [raw]
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        m = _PATH.match(part)
        if not m:
            raise ConfigError([f"--set {item!r}: bad key part {part!r}"])
        name, index = m.group(1), m.group(2)
        nxt: list[Any] = []
        for node in targets:
            if isinstance(node, list):
                named = [e for e in node if isinstance(e, dict) and e.get("name") == name]
                if named:
                    nxt.extend(named)
                    continue
                for entry in node:
                    _descend(entry, name, index, last, value, nxt, item)
            else:
                _descend(node, name, index, last, value, nxt, item)
        targets = nxt
        if not last and not targets:
            raise ConfigError([f"--set {item!r}: {'.'.join(parts[:depth + 1])} does not exist in this site"])


def _descend(node: Any, name: str, index: str | None, last: bool, value: Any,
             out: list[Any], item: str) -> None:
    if not isinstance(node, dict):
        raise ConfigError([f"--set {item!r}: cannot set {name!r} inside a value"])
    if last and index is None:
        node[name] = value
        return
    if name not in node:
        if last:
            node[name] = value
            return
        node[name] = {}
    child = node[name]
    if index is not None:
        if not isinstance(child, list) or int(index) >= len(child):
            raise ConfigError([f"--set {item!r}: {name}[{index}] does not exist"])
        child = child[int(index)]
        if last:
            raise ConfigError([f"--set {item!r}: cannot replace a whole table"])
    out.append(child)
