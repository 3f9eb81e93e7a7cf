"""The `cxrnb` command line: synth -> index -> split, as a user would run it."""
from __future__ import annotations

import pandas as pd
import pytest

from cxrnb.cli import main
from cxrnb.index import read_index
from cxrnb.splits import check_no_leakage


@pytest.mark.parametrize("layout, source", [("kaggle-pneumonia", "kaggle-pneumonia"),
                                            ("covid-chestxray", "covid-chestxray")])
def test_synth_index_split_round_trip(tmp_path, capsys, layout, source):
    data = tmp_path / "data"
    assert main(["-q", "synth", str(data), "--layout", layout, "--n-patients", "24", "--size", "64",
                 "--classes", "normal", "pneumonia", "covid", "--seed", "3"]) == 0
    assert "images of 24 patients" in capsys.readouterr().out
    classes = ["covid", "normal"]
    assert main(["-q", "index", source, str(data), "--out", str(tmp_path / "index.csv"),
                 "--report", str(tmp_path / "dropped.csv"), "--classes", *classes]) == 0
    out = capsys.readouterr().out
    assert "kept per label" in out and "patients:" in out
    idx = read_index(tmp_path / "index.csv")
    assert set(idx["label"]) == set(classes)
    dropped = pd.read_csv(tmp_path / "dropped.csv")
    # pneumonia images are outside a covid-vs-normal task, in both layouts
    assert set(dropped["reason"]) == {"label outside task"}
    manifest = pd.read_csv(data / "synthetic.csv")
    assert len(idx) + len(dropped) == len(manifest)
    assert main(["-q", "split", str(tmp_path / "index.csv"), "--out", str(tmp_path / "split.csv"),
                 "--val", "0.2", "--test", "0.2", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "patients" in out and "train" in out
    split = read_index(tmp_path / "split.csv")
    check_no_leakage(split)
    assert set(split["split"]) == {"train", "val", "test"}


def test_synthetic_source_reads_manifest_with_masks(tmp_path, capsys):
    data = tmp_path / "d"
    main(["-q", "synth", str(data), "--n-patients", "8", "--size", "64"])
    assert main(["-q", "index", "synthetic", str(data), "--out", str(tmp_path / "i.csv")]) == 0
    idx = read_index(tmp_path / "i.csv")
    assert {"lung_mask", "lesion_mask"} <= set(idx.columns)
    assert set(idx["label"]) == {"normal", "pneumonia", "covid", "effusion"}


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["index", "nih", str(tmp_path / "missing"), "--out", str(tmp_path / "i.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cxrnb index: error:") and "not found" in err
    with pytest.raises(SystemExit):
        main(["index", "mimic", str(tmp_path), "--out", "x.csv"])
