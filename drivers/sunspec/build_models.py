"""Generate ``drivers/sunspec/models.json`` from pysunspec2's model definitions.

Run ``python -m drivers.sunspec.build_models > drivers/sunspec/models.json`` with pysunspec2 1.3.7
installed (the ``dev`` extra). Only the models in :data:`MODEL_IDS` are kept.

Every point gets its offset from the model ID register (the first data point is at +2; points of
a repeating group are at an offset from the start of their module), its SunSpec type and size,
its scale-factor point, units, access and its "not implemented" register image
(``sentinel``: an unsigned integer, ``"nan"`` for floats, null where there is none).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

MODEL_IDS = (
    1, 101, 102, 103, 120, 121, 122, 123, 124, 160,
    201, 202, 203, 204, 211, 212, 213, 214, 701, 702, 703, 704, 802,
)

SENTINELS: dict[str, int | str | None] = {
    "int16": 0x8000,
    "uint16": 0xFFFF,
    "count": 0xFFFF,
    "enum16": 0xFFFF,
    "bitfield16": 0xFFFF,
    "acc16": 0,
    "sunssf": 0x8000,
    "int32": 0x8000_0000,
    "uint32": 0xFFFF_FFFF,
    "enum32": 0xFFFF_FFFF,
    "bitfield32": 0xFFFF_FFFF,
    "acc32": 0,
    "ipaddr": 0,
    "int64": 0x8000_0000_0000_0000,
    "uint64": 0xFFFF_FFFF_FFFF_FFFF,
    "bitfield64": 0xFFFF_FFFF_FFFF_FFFF,
    "acc64": 0,
    "float32": "nan",
    "float64": "nan",
    "string": 0,
    "eui48": 0,
    "ipv6addr": 0,
    "pad": None,
}
"""SunSpec "not implemented" image per type (acc counters: 0; strings: all NUL)."""


def models_dir() -> Path:
    import sunspec2  # only needed to build the table

    return Path(sunspec2.__file__).parent / "models" / "json"


def _point(p: dict[str, Any], offset: int, prefix: str) -> dict[str, Any]:
    ptype = p["type"]
    if ptype not in SENTINELS:
        raise ValueError(f"point {prefix}{p['name']}: unknown SunSpec type {ptype!r}")
    out: dict[str, Any] = {
        "name": prefix + p["name"],
        "offset": offset,
        "type": ptype,
        "size": int(p["size"]),
        "sf": p.get("sf"),
        "units": p.get("units"),
        "access": p.get("access", "R"),
        "mandatory": p.get("mandatory") == "M",
        "sentinel": SENTINELS[ptype],
        "label": p.get("label") or "",
    }
    symbols = p.get("symbols")
    if symbols:
        out["symbols"] = {s["name"]: int(s["value"]) for s in symbols}
    if isinstance(p.get("sf"), int):
        out["sf"] = None
        out["sf_value"] = p["sf"]
    return out


def _flatten(group: dict[str, Any], start: int, prefix: str) -> tuple[list[dict[str, Any]], int]:
    """Points of a group and its fixed subgroups, from ``start``; returns them and the end offset."""
    points: list[dict[str, Any]] = []
    offset = start
    for p in group.get("points", []):
        points.append(_point(p, offset, prefix))
        offset += int(p["size"])
    for sub in group.get("groups", []):
        count = sub.get("count", 1)
        if not isinstance(count, int) or count == 0:
            raise ValueError(f"group {prefix}{sub['name']}: a repeating group must be the model's last")
        for i in range(count):
            tag = sub["name"] if count == 1 else f"{sub['name']}[{i + 1}]"
            sub_points, offset = _flatten(sub, offset, f"{prefix}{tag}.")
            points += sub_points
    return points, offset


def _repeats(group: dict[str, Any]) -> bool:
    """A group repeats to fill the model when its count is a point name or 0 (pysunspec2's form)."""
    count = group.get("count", 1)
    return not isinstance(count, int) or count == 0


def _count_point(points: list[dict[str, Any]], group: dict[str, Any]) -> str | None:
    count = group.get("count")
    if isinstance(count, str):
        return count
    counts = [p["name"] for p in points if p["type"] == "count"]
    return counts[0] if len(counts) == 1 else None


def build_model(data: dict[str, Any]) -> dict[str, Any]:
    group = data["group"]
    fixed = dict(group)
    subgroups = list(group.get("groups", []))
    repeating_def = None
    if subgroups and _repeats(subgroups[-1]):
        repeating_def = subgroups.pop()
    fixed["groups"] = subgroups
    points, end = _flatten(fixed, 0, "")
    if [p["name"] for p in points[:2]] != ["ID", "L"]:
        raise ValueError(f"model {data['id']}: does not start with ID, L")
    model: dict[str, Any] = {
        "id": int(data["id"]),
        "name": group["name"],
        "label": group.get("label") or "",
        "fixed_length": end - 2,
        "points": points[2:],
        "repeating": None,
    }
    if repeating_def is not None:
        rep_points, rep_end = _flatten({**repeating_def, "groups": repeating_def.get("groups", [])}, 0, "")
        model["repeating"] = {
            "name": repeating_def["name"],
            "count_point": _count_point(points, repeating_def),
            "length": rep_end,
            "points": rep_points,
        }
    return model


def build(directory: Path | None = None) -> dict[str, Any]:
    directory = directory or models_dir()
    models = {}
    for model_id in MODEL_IDS:
        data = json.loads((directory / f"model_{model_id}.json").read_text(encoding="utf-8"))
        models[str(model_id)] = build_model(data)
    return {"source": "pysunspec2 1.3.7, sunspec2/models/json", "models": models}


def dumps(table: dict[str, Any]) -> str:
    """JSON with one point per line, so a regenerated table diffs point by point."""
    lines = ["{", f' "source": {json.dumps(table["source"])},', ' "models": {']
    models = list(table["models"].items())
    for i, (key, model) in enumerate(models):
        lines.append(f"  {json.dumps(key)}: {{")
        head = {k: v for k, v in model.items() if k not in ("points", "repeating")}
        lines += [f"   {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
        lines.append('   "points": [')
        lines += _point_lines(model["points"], "    ")
        lines.append("   ],")
        rep = model["repeating"]
        if rep is None:
            lines.append('   "repeating": null')
        else:
            lines.append('   "repeating": {')
            lines += [f"    {json.dumps(k)}: {json.dumps(v)}," for k, v in rep.items() if k != "points"]
            lines.append('    "points": [')
            lines += _point_lines(rep["points"], "     ")
            lines += ["    ]", "   }"]
        lines.append("  }" + ("," if i < len(models) - 1 else ""))
    lines += [" }", "}"]
    return "\n".join(lines) + "\n"


def _point_lines(points: list[dict[str, Any]], indent: str) -> list[str]:
    return [indent + json.dumps(p) + ("," if i < len(points) - 1 else "") for i, p in enumerate(points)]


def main() -> None:
    sys.stdout.write(dumps(build()))


if __name__ == "__main__":
    main()
