"""Validation: the bad-file corpus of real collections, generated here, never crashes or vanishes."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxrnb.images import ImageCache, ImageError, read_gray
from cxrnb.validate import duplicate_pixels, load_index, validate_images


def _png_with_header_size(path: Path, width: int, height: int) -> Path:
    """A tiny valid-looking PNG whose header claims width x height (a decompression bomb)."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def bad_corpus(tmp_path, write_image):
    """A folder-layout dataset with one of every kind of bad and awkward file."""
    d = tmp_path / "normal"
    write_image(d / "good.png")
    (d / "empty.png").write_bytes(b"")
    full = write_image(tmp_path / "x" / "full.jpg", fmt="JPEG", size=128)
    (d / "truncated.jpg").write_bytes(full.read_bytes()[: len(full.read_bytes()) // 3])
    (d / "text.png").write_text("this is not an image")
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16 % 4096 + 1000).astype(np.uint16)  # 12-bit data
    Image.fromarray(ramp).save(d / "sixteen.png")
    write_image(d / "rgb.png", mode="RGB", seed=1)
    write_image(d / "rgba.png", mode="RGBA", seed=2)
    write_image(d / "cmyk.jpg", mode="CMYK", fmt="JPEG", seed=3)
    write_image(d / "palette.png", mode="P", seed=4)
    write_image(d / "tiny.png", size=8)
    _png_with_header_size(d / "bomb.png", 100_000, 100_000)
    return tmp_path


def test_bad_files_are_reported_with_reasons(bad_corpus):
    res = load_index("folder", bad_corpus, classes=("normal",), progress=False)
    reasons = res.report.set_index("path")["reason"].to_dict()
    assert reasons == {
        "normal/empty.png": "empty file",
        "normal/truncated.jpg": "corrupt image",
        "normal/text.png": "not an image",
        "normal/tiny.png": "too small",
        "normal/bomb.png": "decompression bomb",
        "x/full.jpg": "label outside task",
    }
    kept = set(res.index["path"])
    assert kept == {"normal/good.png", "normal/sixteen.png", "normal/rgb.png", "normal/rgba.png",
                    "normal/cmyk.jpg", "normal/palette.png"}
    bomb = res.report.set_index("path").loc["normal/bomb.png", "detail"]
    assert "10,000,000,000 pixels" in bomb


def test_every_row_is_kept_or_reported(bad_corpus):
    res = load_index("folder", bad_corpus, progress=False)
    files = [p for p in bad_corpus.rglob("*") if p.is_file()]
    assert len(res.index) + len(res.report) == len(files)


def test_sixteen_bit_png_is_stretched_not_clipped(bad_corpus):
    arr, info = read_gray(bad_corpus / "normal" / "sixteen.png")
    assert info.bit_depth == 16 and arr.dtype == np.uint8
    assert arr.min() == 0 and arr.max() == 255
    src = np.asarray(Image.open(bad_corpus / "normal" / "sixteen.png"), dtype=float)
    # order of grey levels is preserved (monotone mapping), not saturated
    assert np.corrcoef(src.ravel(), arr.ravel().astype(float))[0, 1] > 0.999
    assert len(np.unique(arr)) > 200


def test_colour_modes_become_the_same_gray(tmp_path, write_image):
    base = write_image(tmp_path / "l.png", seed=7)
    ref, _ = read_gray(base)
    for mode in ("RGB", "RGBA", "LA"):
        arr, info = read_gray(write_image(tmp_path / f"{mode}.png", seed=7, mode=mode))
        assert info.mode == mode
        np.testing.assert_allclose(arr.astype(int), ref.astype(int), atol=1)


def test_read_gray_resizes_and_uses_jpeg_draft(tmp_path, write_image):
    p = write_image(tmp_path / "big.jpg", fmt="JPEG", size=512)
    arr, info = read_gray(p, 64)
    assert arr.shape == (64, 64) and (info.width, info.height) == (512, 512)
    full, _ = read_gray(p)
    ref = np.asarray(Image.fromarray(full).resize((64, 64), Image.Resampling.BOX))
    assert np.abs(arr.astype(int) - ref.astype(int)).mean() < 4  # reduced decode ~ full decode


def test_image_error_names_the_file(tmp_path):
    p = tmp_path / "nope.png"
    p.write_text("x")
    with pytest.raises(ImageError, match="nope.png: not an image"):
        read_gray(p)


def test_validation_fills_the_cache(bad_corpus):
    cache = ImageCache(bad_corpus.parent / "cache", 32)
    idx, _ = load_index("folder", bad_corpus, classes=("normal",), cache=cache, progress=False)
    for p in idx["path"]:
        hit = cache.get(bad_corpus / p)
        assert hit is not None and hit.shape == (32, 32) and hit.dtype == np.uint8
    # a changed file is a cache miss, not stale pixels
    target = bad_corpus / "normal" / "good.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(target)
    assert cache.get(target) is None
    assert cache.read(target).max() == 0


def test_duplicate_pixels_are_flagged(tmp_path, write_image):
    write_image(tmp_path / "a" / "one.png", seed=3)
    write_image(tmp_path / "a" / "two.png", seed=3)
    write_image(tmp_path / "a" / "three.png", seed=4)
    idx, _ = load_index("folder", tmp_path, progress=False)
    d = duplicate_pixels(idx)
    assert sorted(d["path"]) == ["a/one.png", "a/two.png"]
    groups = idx.set_index("path")["patient_group"]
    assert groups["a/one.png"] == groups["a/two.png"] != groups["a/three.png"]


def test_validate_images_lowers_bomb_limit(tmp_path, write_image):
    write_image(tmp_path / "c" / "img.png", size=200)
    idx = pd.DataFrame({"path": ["c/img.png"], "label": ["c"], "patient_id": ["1"], "view": [None],
                        "source": ["folder"], "root": [str(tmp_path)]})
    good, report = validate_images(idx, max_pixels=10_000, progress=False)
    assert good.empty and report["reason"].tolist() == ["decompression bomb"]


@pytest.mark.parametrize("layout, source, expected", [
    ("kaggle-pneumonia", "kaggle-pneumonia", {"empty file", "corrupt image", "not an image"}),
    ("kaggle-pneumonia", "synthetic", {"empty file", "corrupt image", "not an image", "missing file", "duplicate listing"}),
    ("covid-chestxray", "covid-chestxray", {"empty file", "corrupt image", "not an image", "missing file",
                                            "duplicate listing", "filtered: view", "filtered: modality"}),
])
def test_synthetic_defects_reach_the_report(tmp_path, layout, source, expected):
    from cxrnb.synthetic import generate

    m = generate(tmp_path / "d", layout=layout, n_patients=8, size=64, defects=True, progress=False)
    classes = {"classes": ("normal", "pneumonia", "covid", "effusion")} if source != "synthetic" else {}
    res = load_index(source, tmp_path / "d", progress=False, **classes)
    assert set(res.report["reason"]) == expected
    # good images all kept: every manifest image that is a real render is in the index
    good = m[m["lung_mask"].notna()]
    assert set(good["path"]) <= set(res.index["path"])


def test_unreadable_file_is_not_called_corrupt(tmp_path, write_image, monkeypatch):
    import builtins
    import os

    write_image(tmp_path / "normal" / "ok.png")
    locked = write_image(tmp_path / "normal" / "locked.png", seed=1)
    if os.geteuid() == 0:  # root reads anything: fail the open as it fails for a user
        real = builtins.open

        def fake_open(file, *args, **kwargs):
            if Path(file) == locked:
                raise PermissionError(13, "Permission denied", str(file))
            return real(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", fake_open)
    else:
        locked.chmod(0)
    res = load_index("folder", tmp_path, progress=False)
    row = res.report.set_index("path").loc["normal/locked.png"]
    assert row["reason"] == "unreadable file" and "Permission denied" in row["detail"]
    assert res.index["path"].tolist() == ["normal/ok.png"]


def test_broken_link_is_not_said_to_be_listed_in_metadata(tmp_path, write_image):
    write_image(tmp_path / "normal" / "ok.png")
    (tmp_path / "normal" / "link.png").symlink_to(tmp_path / "gone.png")
    rep = load_index("folder", tmp_path, progress=False).report.set_index("path")
    assert rep.loc["normal/link.png", "reason"] == "broken link"
    assert "metadata" not in rep.loc["normal/link.png", "detail"]
