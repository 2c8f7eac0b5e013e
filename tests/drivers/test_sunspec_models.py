"""The SunSpec model tables: offsets checked against devices.md, and the committed file current."""

from __future__ import annotations

import json

import pytest

from drivers.sunspec.build_models import MODEL_IDS
from drivers.sunspec.models import MODELS_FILE, model_def, model_defs

# devices.md section 2, "Point offsets from the model ID register".
DEVICES_MD_OFFSETS: dict[int, dict[str, int]] = {
    1: {"Mn": 2, "Md": 18, "SN": 50, "DA": 66},
    103: {"A": 2, "PhVphA": 10, "W": 14, "W_SF": 15, "Hz": 16, "VA": 18, "VAr": 20, "PF": 22, "WH": 24,
          "DCW": 31, "St": 38, "Evt1": 40},
    120: {"WRtg": 3, "WRtg_SF": 4, "WHRtg": 19, "MaxChaRte": 23, "MaxDisChaRte": 25},
    121: {"WMax": 2, "WMax_SF": 22},
    123: {"Conn": 4, "WMaxLimPct": 5, "WMaxLimPct_WinTms": 6, "WMaxLimPct_RvrtTms": 7, "WMaxLimPct_RmpTms": 8,
          "WMaxLim_Ena": 9, "OutPFSet": 10, "WMaxLimPct_SF": 23},
    124: {"WChaMax": 2, "StorCtl_Mod": 5, "MinRsvPct": 7, "ChaState": 8, "ChaSt": 11, "OutWRte": 12,
          "InWRte": 13, "InOutWRte_RvrtTms": 15, "ChaGriSet": 17},
    160: {"DCA_SF": 2, "DCV_SF": 3, "DCW_SF": 4, "N": 8},
    203: {"A": 2, "Hz": 16, "W": 18, "W_SF": 22, "TotWhExp": 38, "TotWhImp": 46, "TotWh_SF": 54},
    701: {"St": 3, "W": 10, "W_SF": 116},
    704: {"WMaxLimPctEna": 14, "WMaxLimPct": 15, "WMaxLimPctRvrt": 16, "WMaxLimPctRvrtTms": 18,
          "WSetEna": 22, "WSet": 24, "WSetPct": 28},
    802: {"SoC": 11, "SoH": 13, "ChaSt": 16, "LocRemCtl": 17, "Hb": 18, "CtrlHb": 19, "State": 22, "W": 47},
}


@pytest.mark.parametrize("model_id", sorted(DEVICES_MD_OFFSETS))
def test_offsets_match_devices_md(model_id: int) -> None:
    d = model_def(model_id)
    got = {name: d.point(name).offset for name in DEVICES_MD_OFFSETS[model_id]}
    assert got == DEVICES_MD_OFFSETS[model_id]


def test_types_sizes_and_sentinels() -> None:
    rvrt = model_def(704).point("WMaxLimPctRvrtTms")
    assert (rvrt.type, rvrt.size) == ("uint32", 2)
    assert model_def(704).point("WSet").type == "int32"
    assert model_def(103).point("W").sf == "W_SF"
    assert model_def(103).point("W").sentinel == 0x8000
    assert model_def(103).point("Hz").sentinel == 0xFFFF
    assert model_def(103).point("WH").sentinel == 0  # acc32: 0 is "not accumulated"
    assert model_def(103).point("St").sentinel == 0xFFFF
    assert model_def(213).point("W").sentinel is None  # float: NaN
    assert model_def(1).point("SN").sentinel == 0  # string: all NUL
    assert model_def(123).point("WMaxLimPct").writable
    assert not model_def(103).point("W").writable


def test_repeating_modules_of_model_160() -> None:
    d = model_def(160)
    assert d.fixed_length == 8
    assert d.repeating is not None
    assert (d.repeating.count_point, d.repeating.length) == ("N", 20)
    offsets = {p.name: p.offset for p in d.repeating.points}
    assert offsets == {"ID": 0, "IDStr": 1, "DCA": 9, "DCV": 10, "DCW": 11, "DCWH": 12, "Tms": 14, "Tmp": 16,
                       "DCSt": 17, "DCEvt": 18}


def test_fixed_lengths() -> None:
    ids = (1, 103, 120, 121, 122, 123, 124, 203, 213, 701, 704, 802)
    lengths = {m: model_def(m).fixed_length for m in ids}
    assert lengths == {1: 66, 103: 50, 120: 26, 121: 30, 122: 44, 123: 24, 124: 24, 203: 105, 213: 124,
                       701: 153, 704: 65, 802: 62}


def test_table_holds_exactly_the_listed_models() -> None:
    assert sorted(model_defs()) == sorted(MODEL_IDS)


def test_committed_table_is_generated_from_pysunspec2() -> None:
    pytest.importorskip("sunspec2")
    from drivers.sunspec.build_models import build, dumps

    text = dumps(build())
    assert json.loads(text) == json.loads(MODELS_FILE.read_text(encoding="utf-8"))
    assert MODELS_FILE.read_text(encoding="utf-8") == text, (
        "models.json is stale: run python -m drivers.sunspec.build_models > drivers/sunspec/models.json"
    )
