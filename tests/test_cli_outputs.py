"""Outputs of the `cxrnb` command: checked before the long pass, written atomically, portable paths."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest

import cxrnb.validate
from cxrnb.cli import main
from cxrnb.index import image_paths, read_index, write_index
from cxrnb.validate import load_index

READ_ONLY = Path("/sys")  # not writable, not even by root


@pytest.fixture
def folder_data(tmp_path, write_image):
    """A tiny folder-layout dataset: 2 classes x 4 images."""
    for c in ("normal", "covid"):
        for k in range(4):
            write_image(tmp_path / "data" / c / f"{c}{k}.png", size=40, seed=k + 10 * (c == "covid"))
    return tmp_path / "data"


@pytest.fixture
def no_validation(monkeypatch):
    """Fail the test if the validation pass starts."""
    def boom(*a, **k):
        raise AssertionError("validation started before the outputs were checked")
    monkeypatch.setattr(cxrnb.validate, "load_index", boom)


@pytest.mark.parametrize("option, value, message", [
    ("--out", "missing/index.csv", r"--out .*missing/index\.csv: folder .*missing does not exist"),
    ("--out", ".", r"--out .*: is a folder; give a file name such as index\.csv"),
    ("--report", str(READ_ONLY / "dropped.csv"), r"--report /sys/dropped\.csv: cannot write in /sys"),
    ("--cache", "file.txt", r"--cache .*file\.txt: is a file, not a folder"),
])
def test_index_outputs_are_checked_before_validation(tmp_path, capsys, monkeypatch, folder_data,
                                                     no_validation, option, value, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.txt").write_text("x")
    argv = ["-q", "index", "folder", str(folder_data), "--out", "index.csv", option, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cxrnb index: error: ") and err.count("\n") == 1
    assert re.search(message, err), err


def test_split_out_is_checked(tmp_path, capsys):
    (tmp_path / "index.csv").write_text("path,label,patient_id,view,source,root\n")
    assert main(["split", str(tmp_path / "index.csv"), "--out", str(tmp_path / "no" / "split.csv")]) == 2
    assert re.search(r"--out .*split\.csv: folder .*no does not exist", capsys.readouterr().err)


def test_synth_refuses_a_file_as_out_dir(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    assert main(["-q", "synth", str(tmp_path / "taken"), "--n-patients", "2", "--size", "32"]) == 2
    assert "OUT_DIR" in (err := capsys.readouterr().err) and "is a file, not a folder" in err


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path, capsys, folder_data, monkeypatch):
    out = tmp_path / "index.csv"
    out.write_text("old contents\n")
    real = pd.DataFrame.to_csv

    def half_then_fail(self, path, *a, **k):
        real(self.head(1), path, *a, **k)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    assert main(["-q", "index", "folder", str(folder_data), "--out", str(out)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert out.read_text() == "old contents\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "index.csv"]


@pytest.mark.parametrize("name, make, message", [
    ("empty.csv", lambda p: p.write_text(""), r"empty\.csv: empty file, not an index CSV"),
    ("x.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"),
     r"x\.png: not a CSV text file"),
    ("folder", lambda p: p.mkdir(), r"folder: is a folder, not an index CSV"),
], ids=["empty", "png", "folder"])
def test_split_input_errors_name_the_file(tmp_path, capsys, name, make, message):
    path = tmp_path / name
    make(path)
    assert main(["split", str(path), "--out", str(tmp_path / "split.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cxrnb split: error: ") and err.count("\n") == 1
    assert re.search(message, err), err


def test_split_official_prints_leaking_patients(tmp_path, capsys):
    rows = [("a.png", "normal", "person1", "train"), ("b.png", "normal", "person1", "test"),
            ("c.png", "pneumonia", "person2", "train"), ("d.png", "pneumonia", "person3", "train"),
            ("e.png", "normal", "person4", "train"), ("f.png", "pneumonia", "person5", "test"),
            ("g.png", "normal", "person6", "test")]
    df = pd.DataFrame(rows, columns=["path", "label", "patient_id", "kaggle_split"]).assign(
        view="PA", source="kaggle-pneumonia", root=".")
    df.to_csv(tmp_path / "index.csv", index=False)
    assert main(["split", str(tmp_path / "index.csv"), "--out", str(tmp_path / "split.csv"),
                 "--official", "--val", "0"]) == 0
    err = capsys.readouterr().err
    assert "person1 (test, train)" in err and "--fix-leaks" in err
    assert main(["split", str(tmp_path / "index.csv"), "--out", str(tmp_path / "split.csv"),
                 "--official", "--val", "0", "--fix-leaks"]) == 0
    assert "person1" not in capsys.readouterr().err
    assert read_index(tmp_path / "split.csv").groupby("patient_id")["split"].nunique().max() == 1


def test_root_is_stored_relative_to_the_csv_and_resolved_on_read(tmp_path, monkeypatch, folder_data):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    assert main(["-q", "index", "folder", "data", "--out", "out/index.csv"]) == 0
    text = (tmp_path / "out" / "index.csv").read_text()
    assert str(tmp_path) not in text
    assert set(pd.read_csv(tmp_path / "out" / "index.csv")["root"]) == {"../data"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    idx = read_index("../out/index.csv")
    assert len(idx) == 8 and all(p.is_file() for p in image_paths(idx))
    # an absolute root stays usable, and written again it becomes relative to the new CSV
    idx["root"] = str(folder_data)
    write_index(idx, tmp_path / "deep" / "er" / "i.csv", mkdir=True)
    assert set(pd.read_csv(tmp_path / "deep" / "er" / "i.csv")["root"]) == {"../../data"}
    assert all(p.is_file() for p in image_paths(read_index(tmp_path / "deep" / "er" / "i.csv")))


def test_os_errors_in_the_drop_report_show_no_absolute_paths(tmp_path, folder_data, monkeypatch):
    import PIL.Image

    real_open = PIL.Image.open

    def deny(fp, *a, **k):
        name = str(getattr(fp, "name", fp))  # a path, or the file cxrnb opened
        if name.endswith("covid1.png"):
            raise PermissionError(13, "Permission denied", name)
        return real_open(fp, *a, **k)

    monkeypatch.setattr(PIL.Image, "open", deny)
    res = load_index("folder", folder_data, progress=False)
    row = res.report.set_index("path").loc["covid/covid1.png"]  # the path column names the file
    assert row["reason"] == "unreadable file" and "Permission denied" in row["detail"]
    assert str(tmp_path) not in row["detail"] and os.sep + "covid" + os.sep not in row["detail"]
