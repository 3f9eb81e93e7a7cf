"""`cxrnb index`: task-option mistakes and empty layouts end in one error line, never a traceback."""
from __future__ import annotations

import pandas as pd
import pytest

from cxrnb.cli import main

NIH_CSV = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\n"
           "a.png,Effusion,0,1,58Y,M,PA\nb.png,No Finding,0,2,40Y,F,PA\n")


@pytest.fixture
def roots(tmp_path, write_image):
    nih = tmp_path / "nih"
    nih.mkdir()
    (nih / "Data_Entry_2017.csv").write_text(NIH_CSV)
    write_image(nih / "images" / "a.png")
    write_image(nih / "images" / "b.png", seed=1)
    covid = tmp_path / "covid"
    covid.mkdir()
    (covid / "metadata.csv").write_text("patientid,finding,view,filename\n1,COVID-19,PA,a.png\n")
    write_image(covid / "images" / "a.png")
    kaggle = tmp_path / "kaggle"
    write_image(kaggle / "chest_xray/train/NORMAL/IM-0001-0001.jpeg", fmt="JPEG")
    write_image(kaggle / "chest_xray/train/PNEUMONIA/person1_virus_1.jpeg", fmt="JPEG", seed=1)
    return {"nih": nih, "covid-chestxray": covid, "kaggle-pneumonia": kaggle}


@pytest.mark.parametrize("source, options, message", [
    ("nih", ["--finding", "Efusion"], "'Efusion'"),
    ("nih", ["--classes", "effusion", "normal"], "does not take option 'classes'"),
    ("kaggle-pneumonia", ["--views", "PA"], "does not take option 'views'"),
    ("kaggle-pneumonia", ["--finding", "Effusion"], "does not take option 'finding'"),
    ("covid-chestxray", ["--classes", "covid", "normall"], "'normall'"),
])
def test_task_option_mistakes_are_one_error_line(tmp_path, roots, capsys, source, options, message):
    out = tmp_path / "i.csv"
    assert main(["-q", "index", source, str(roots[source]), "--out", str(out), *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cxrnb index: error:") and message in err and err.count("\n") == 1
    assert "Traceback" not in err and not out.exists()


def test_valid_options_still_index(tmp_path, roots, capsys):
    out = tmp_path / "i.csv"
    assert main(["-q", "index", "nih", str(roots["nih"]), "--out", str(out), "--views", "PA"]) == 0
    assert pd.read_csv(out)["label"].value_counts().to_dict() == {"effusion": 1, "normal": 1}
    assert main(["-q", "index", "covid-chestxray", str(roots["covid-chestxray"]), "--out", str(out),
                 "--views", "all", "--modality", "all", "--classes", "covid", "normal"]) == 0


def test_empty_layout_is_one_error_with_the_report_written(tmp_path, capsys):
    root = tmp_path / "k"
    (root / "chest_xray/train/NORMAL").mkdir(parents=True)
    (root / "chest_xray/train/PNEUMONIA").mkdir(parents=True)
    (root / "chest_xray/train/PNEUMONIA/.DS_Store").write_bytes(b"\0")
    report = tmp_path / "dropped.csv"
    assert main(["-q", "index", "kaggle-pneumonia", str(root), "--out", str(tmp_path / "i.csv"),
                 "--report", str(report)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cxrnb index: error: no images found") and err.count("\n") == 1
    assert pd.read_csv(report)["reason"].tolist() == ["hidden file"]


def test_zero_byte_metadata_is_one_error_naming_the_file(tmp_path, capsys):
    (tmp_path / "metadata.csv").write_bytes(b"")
    assert main(["-q", "index", "covid-chestxray", str(tmp_path), "--out", str(tmp_path / "i.csv")]) == 2
    err = capsys.readouterr().err
    assert "metadata.csv: empty file" in err and err.count("\n") == 1
