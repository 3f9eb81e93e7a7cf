"""combine(): indexes of several sources become one, with identical pixels in one patient group."""
from __future__ import annotations

import pandas as pd
import pytest

from cxrnb.splits import check_no_leakage, patient_groups, split_by_patient
from cxrnb.validate import LoadResult, combine


def _frame(source: str, ids: list[str], hashes: list[str], label: str, group: bool) -> pd.DataFrame:
    df = pd.DataFrame({"path": [f"{source}/{i}_{h}.png" for i, h in zip(ids, hashes)], "label": label,
                       "patient_id": ids, "view": "PA", "source": source, "root": f"/data/{source}",
                       "pixel_hash": hashes})
    if group:
        df["patient_group"] = df["patient_id"]
    return df


def _two_sources(group_b: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Source a: 30 patients with 2 films each. Source b re-publishes 10 of a's films under
    its own ids (one b patient per film) and adds 20 films of its own."""
    ids_a = [f"p{i}" for i in range(30) for _ in range(2)]
    hashes_a = [f"h{i}_{k}" for i in range(30) for k in range(2)]
    a = _frame("a", ids_a, hashes_a, "covid", group=True)
    hashes_b = [f"h{i}_0" for i in range(10)] + [f"n{j}" for j in range(20)]
    b = _frame("b", [f"b{j}" for j in range(30)], hashes_b, "normal", group=group_b)
    return a, b


@pytest.mark.parametrize("group_b", [True, False], ids=["both-grouped", "b-lacks-patient_group"])
def test_same_films_under_two_sources_share_a_group_and_split_cleanly(group_b):
    a, b = _two_sources(group_b)
    out = combine(LoadResult(a, pd.DataFrame()), b)
    assert len(out) == len(a) + len(b)
    per_hash = out.groupby("pixel_hash")["patient_group"].nunique()
    assert per_hash.max() == 1  # identical pixels: one group, whichever source listed them
    # patient p3 of a and b3 of b own the same film: one group for both
    assert out.loc[out["patient_id"] == "a:p3", "patient_group"].iloc[0] == \
        out.loc[out["patient_id"] == "b:b3", "patient_group"].iloc[0]
    assert out["patient_group"].notna().all()
    for seed in range(5):
        check_no_leakage(split_by_patient(out, val=0.2, test=0.2, seed=seed))


def test_combine_keeps_groups_made_within_a_source():
    a, b = _two_sources(True)
    a.loc[a["patient_id"] == "p5", "patient_group"] = "p4"  # merged earlier (shared file)
    out = combine(a, b)
    g = out.set_index("patient_id")["patient_group"]
    assert g["a:p5"].iloc[0] == g["a:p4"].iloc[0]
    assert g["a:p6"].iloc[0] != g["a:p4"].iloc[0]


def test_patient_groups_joins_links_and_pixels_transitively():
    idx = pd.DataFrame({"patient_id": ["c", "b", "a", "d", "e", "f", "g"],
                        "pixel_hash": ["h1", "h1", "h2", "h3", "h4", None, None]})
    groups = patient_groups(idx, [("a", "b")])
    # c-b by pixels, b-a by link, named by the smallest id; rows never hashed join nobody
    assert groups.tolist() == ["a", "a", "a", "d", "e", "f", "g"]
