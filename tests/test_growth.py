"""benchmarks/growth.py: its films are distinct, valid NIH-layout PNGs, its growth arithmetic is
right, and a tiny run writes the report the README quotes."""
from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxrnb.sources import read_source
from cxrnb.validate import load_index

spec = importlib.util.spec_from_file_location("growth", Path(__file__).resolve().parents[1] / "benchmarks"
                                              / "growth.py")
growth = importlib.util.module_from_spec(spec)
spec.loader.exec_module(growth)


def test_a_film_decodes_to_its_pool_film_with_only_the_stamp_changed():
    pool = growth.make_pool(64, 2)
    png, stamp = growth.film_png(pool[1], 7)
    got = np.asarray(Image.open(io.BytesIO(png)))
    want = pool[1].img.copy()
    want[-growth.STAMP_ROWS:] = stamp
    assert np.array_equal(got, want)
    assert not np.array_equal(got, pool[1].img)                          # the stamp is there
    assert np.array_equal(got[:-growth.STAMP_ROWS], pool[1].img[:-growth.STAMP_ROWS])
    assert growth.film_png(pool[1], 7)[0] == png                           # a pure function of j


def test_the_writer_gives_n_distinct_films_that_the_nih_reader_indexes(tmp_path):
    data = tmp_path / "d"
    info = growth.make_films(data, 10, 64, 10)
    assert info["films"] == 10
    folder = growth.count_folder(data, 10)
    raw = read_source("nih", folder)
    assert len(raw) == 10 and raw["reason"].isna().all()
    assert raw["path"].str.startswith("images_001/images/").all()
    assert raw.loc[raw["label"] == "effusion", "path"].tolist() == [growth.nih_rel(9)]  # one in ten, as NIH
    res = load_index("nih", folder, cache=tmp_path / "cache", progress=False)
    assert len(res.index) == 10 and res.index["pixel_hash"].nunique() == 10
    # reused, not rewritten: the same inode and mtime; a larger count only adds files
    first = (data / "films" / growth.nih_rel(0)).stat()
    assert growth.make_films(data, 12, 64, 10)["films"] == 12
    again = (data / "films" / growth.nih_rel(0)).stat()
    assert (first.st_ino, first.st_mtime_ns) == (again.st_ino, again.st_mtime_ns)
    assert (data / "films" / growth.nih_rel(11)).is_file()


def test_fit_on_known_lines():
    films = [1000, 5000, 20000]
    lin = growth.fit(films, [2 + 0.01 * n for n in films])
    assert lin["per_film"] == pytest.approx(0.01) and lin["fixed"] == pytest.approx(2)
    assert lin["r2"] == pytest.approx(1)
    assert lin["ratio"] == pytest.approx((202 / 20000) / (12 / 1000))     # the fixed cost spreads out
    quad = growth.fit(films, [1e-6 * n * n for n in films])
    assert quad["exponent"] == pytest.approx(2) and quad["ratio"] == pytest.approx(20)
    assert growth.fit(films, [0.5 * n for n in films])["exponent"] == pytest.approx(1)
    with pytest.raises(ValueError, match="two different counts"):
        growth.fit([5, 5], [1, 2])


def test_extrapolation_and_verdicts_on_known_numbers():
    rows = [{"films": n, "seconds": 1 + 0.01 * n, "cpu_seconds": 0.02 * n, "peak_rss_mb": 300 + 0.01 * n,
             "cache_bytes_per_film": 120_000.0, "idx_bytes_per_film": 80.0} for n in (1000, 2000)]
    a = growth.analyse(rows, {"mimic_jpeg": {"base_bytes": 400_000}})
    nih = a["extrapolation"]["NIH ChestX-ray14"]
    assert nih["seconds"] == pytest.approx(1 + 0.01 * 112_120)
    assert nih["cache_bytes"] == pytest.approx(120_000 * 112_120)
    assert nih["peak_rss_mb"] == pytest.approx(300 + 0.01 * 112_120) and nih["memory_within_limit"]
    mimic = a["extrapolation"]["MIMIC-CXR"]
    assert mimic["peak_rss_mb"] == pytest.approx(300 + 3771.1) and not mimic["memory_within_limit"]
    own = a["extrapolation"]["MIMIC-CXR at 2544 x 3056 JPEG"]
    assert own["cache_bytes"] == pytest.approx(400_080 * 377_110)
    assert a["time_flat"] and a["cpu_flat"] and a["memory_within_limit"]
    rows[1]["seconds"] = 1 + 0.03 * 2000                                   # per-film time trebles
    assert not growth.analyse(rows)["time_flat"]


def test_options_are_checked_before_any_film_is_written(tmp_path):
    with pytest.raises(SystemExit, match="two different counts"):
        growth.main(["--counts", "8", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "g.json")])
    with pytest.raises(SystemExit, match="is a folder"):
        growth.main(["--counts", "8", "16", "--data", str(tmp_path / "d"), "--out", str(tmp_path)])
    assert not (tmp_path / "d").exists()


def test_a_tiny_run_writes_the_report(tmp_path, capsys):
    out = tmp_path / "r" / "growth.json"
    report = growth.main(["--counts", "8", "16", "--size", "64", "--pool", "3", "--cores", "1",
                          "--data", str(tmp_path / "d"), "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert [r["films"] for r in report["results"]] == [8, 16]
    for r in report["results"]:
        assert r["seconds"] > 0 and r["peak_rss_mb"] >= r["rss_before_mb"] > 0
        assert r["pack_bytes_per_film"] == 64 * 64                         # a 64 px film is its own base image
        assert r["cache_bytes_per_film"] == r["pack_bytes_per_film"] + r["idx_bytes_per_film"]
        assert r["ms_per_film"] == pytest.approx(1000 * r["seconds"] / r["films"])
    assert report["cores_used"] == 1
    assert set(report["analysis"]["extrapolation"]) == {"NIH ChestX-ray14", "MIMIC-CXR",
                                                        "MIMIC-CXR at 2544 x 3056 JPEG"}
    assert report["decode"]["mimic_jpeg"]["base_shape"] == [764, 636]      # JPEG drafted 1/4, >= 320 a side
    assert not list((tmp_path / "d").glob("run-*"))                        # caches deleted
    text = capsys.readouterr().out
    assert "| films | wall s |" in text and "NIH ChestX-ray14 | 112,120" in text and "load average" in text
