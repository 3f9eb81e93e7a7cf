"""Solutions to the exercises of notebook 01 (data exploration), run by tests/test_exercises.py."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from cxrnb.plots import source_vs_label
from cxrnb.splits import leaking_patients, split_by_image
from cxrnb.synthetic import generate
from cxrnb.validate import load_index

SMALL = dict(n_patients=40, size=64, realistic=True, progress=False)


def _index(folder: Path, **kwargs) -> pd.DataFrame:
    generate(folder, **{**SMALL, **kwargs})
    index, _ = load_index("synthetic", folder, progress=False)
    return index


def exercise_1(workdir: Path) -> dict:
    """One film per patient: a split by image cannot put a patient in two splits (0 patients);
    with 4-8 films per patient most patients cross splits."""
    leaks = {}
    for ipp in ((1, 1), (4, 8)):
        index = _index(workdir / f"ipp{ipp[0]}", images_per_patient=ipp)
        naive = split_by_image(index, val=0.15, test=0.15, seed=0)
        leaks[ipp] = len(leaking_patients(naive, "patient_id"))
    assert leaks[(1, 1)] == 0
    assert leaks[(4, 8)] > 40 / 2
    return {"one film per patient": leaks[(1, 1)], "4-8 films per patient": leaks[(4, 8)]}


def exercise_2(workdir: Path) -> dict:
    """Balanced patients: the majority-class baseline falls from about 73 % to about 50 %
    (not exactly: patients have different numbers of films)."""
    shares = {}
    for name, fractions in (("realistic", None), ("balanced", {"normal": 0.5, "pneumonia": 0.5})):
        index = _index(workdir / name, class_fractions=fractions)
        shares[name] = float(index["label"].value_counts(normalize=True).iloc[0])
    assert shares["realistic"] > 0.6
    assert 0.5 <= shares["balanced"] < 0.6
    return shares


def exercise_3(workdir: Path) -> dict:
    """Normals from the COVID collection itself: the collection no longer predicts the label
    (one collection, so its majority label is right only for the majority class)."""
    generate(workdir / "covid", layout="covid-chestxray", **SMALL)
    covid, _ = load_index("covid-chestxray", workdir / "covid", progress=False, classes=["covid", "normal"])
    mix = covid.assign(collection="covid-chestxray")
    _, accuracy = source_vs_label(mix, by="collection")
    majority = float(mix["label"].value_counts(normalize=True).iloc[0])
    assert accuracy == majority < 1.0
    return {"collection-alone accuracy": accuracy}
