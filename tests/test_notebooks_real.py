"""The notebooks run on the real subsets in ../shared/data by changing only the parameters cell."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cxrnb.notebook import execute

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

REAL = {
    "kaggle-pneumonia": {"TASK": {"classes": ["normal", "bacteria", "virus"]}},
    "covid-chestxray": {"TASK": {"classes": ["covid", "normal"]}},
    "nih": {"TASK": {"finding": "Effusion"}},
}
FOLDERS = {"kaggle-pneumonia": "kaggle-pneumonia", "covid-chestxray": "actualmed-covid",
           "nih": "nih-chestxray14"}


@pytest.mark.parametrize("dataset", sorted(REAL))
def test_data_exploration_on_real_subset(dataset, shared_data, tmp_path):
    root = shared_data(FOLDERS[dataset])
    params = {"DATASET": dataset, "DATA_DIR": str(root), "OUTPUT_DIR": str(tmp_path), **REAL[dataset]}
    nb = execute(NOTEBOOKS / "01_data_exploration.ipynb", params, tmp_path / "01.ipynb")
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    split = pd.read_csv(tmp_path / "split.csv", dtype={"patient_id": str})
    assert split.groupby("patient_id")["split"].nunique().max() == 1
    assert (tmp_path / "figures" / "01_samples.png").stat().st_size > 10_000
