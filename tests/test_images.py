"""cxrnb.images: one set of pixels whichever path decodes them; PIL's guard untouched; bounded memory."""
from __future__ import annotations

import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import cxrnb.images as images
from cxrnb.images import ImageCache, ImageError, base_side, map_threads, read_base, read_gray
from cxrnb.pipeline import load_images
from cxrnb.validate import load_index, validate_images


def noisy(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = 120 + 70 * np.sin(7 * x + seed) * np.cos(5 * y) + rng.normal(0, 12, (h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def films(root: Path) -> pd.DataFrame:
    """JPEGs above the base side (gray, RGB, EXIF-rotated), a 16-bit PNG, a PNG below it."""
    root.mkdir(parents=True, exist_ok=True)
    Image.fromarray(noisy(240, 300, 0)).save(root / "gray.jpg", quality=90)
    Image.fromarray(np.dstack([noisy(300, 260, s) for s in (1, 2, 3)])).save(root / "rgb.jpg", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    Image.fromarray(noisy(200, 330, 4)).save(root / "rotated.jpg", quality=90, exif=exif)
    Image.fromarray(noisy(180, 200, 5).astype(np.uint16) * 16 + 100).save(root / "deep.png")
    Image.fromarray(noisy(50, 60, 6)).save(root / "small.png")
    names = ["gray.jpg", "rgb.jpg", "rotated.jpg", "deep.png", "small.png"]
    return pd.DataFrame({"path": names, "label": "normal", "patient_id": [str(i) for i in range(5)],
                         "view": "PA", "source": "t", "root": str(root)})


@pytest.fixture
def small_base(monkeypatch):
    """A base side below the test images, so draft decoding and the base shrink both happen."""
    monkeypatch.setattr(images, "BASE_SIDE", 64)


@pytest.fixture
def count_decodes(monkeypatch):
    calls: list[str] = []
    real = images.read_base

    def counting(path, *a, **kw):
        calls.append(Path(path).name)
        return real(path, *a, **kw)

    monkeypatch.setattr(images, "read_base", counting)
    return calls


# --------------------------------------------------------------------------- one set of pixels

@pytest.mark.parametrize("size", [48, (40, 56), 96])
def test_validation_cache_pipeline_miss_and_no_cache_give_identical_pixels(tmp_path, small_base, size):
    index = films(tmp_path / "films")
    plain = load_images(index, size, progress=False)
    miss = load_images(index, size, cache=tmp_path / "miss", progress=False)
    hit = load_images(index, size, cache=tmp_path / "miss", progress=False)
    validate_images(index, cache=ImageCache(tmp_path / "val"), progress=False)
    after_validation = load_images(index, size, cache=tmp_path / "val", progress=False)
    hw = (size, size) if isinstance(size, int) else size
    assert plain.shape == (5, *hw)
    for other in (miss, hit, after_validation):
        np.testing.assert_array_equal(other, plain)
    for i, p in enumerate(index["path"]):
        np.testing.assert_array_equal(read_gray(tmp_path / "films" / p, size)[0], plain[i], err_msg=p)


def test_base_image_is_a_draft_decode_reduced_by_whole_factors(tmp_path, small_base):
    root = tmp_path / "films"
    films(root)
    assert read_base(root / "gray.jpg")[0].shape == (120, 150)  # JPEG at 1/2: shorter side in [64, 128)
    assert read_base(root / "rotated.jpg")[0].shape == (165, 100)  # EXIF rotation applied
    deep, info = read_base(root / "deep.png")  # 200 x 180 PNG: 2 x 2 block means
    assert deep.shape == (90, 100) and info.bit_depth == 16
    full = read_gray(root / "deep.png")[0].astype(float)
    np.testing.assert_allclose(deep, full.reshape(90, 2, 100, 2).mean(axis=(1, 3)), atol=0.5)
    base, info = read_base(root / "small.png")
    np.testing.assert_array_equal(base, noisy(50, 60, 6))  # never enlarged
    assert (info.width, info.height) == (60, 50)
    assert base_side(48) == 64 and base_side((40, 100)) == 100


def test_a_validation_cache_serves_other_model_sizes_without_decoding(tmp_path, count_decodes):
    root = tmp_path / "kaggle"
    for i, cls in enumerate(["NORMAL", "PNEUMONIA"]):
        (root / cls).mkdir(parents=True)
        Image.fromarray(noisy(900, 1000, i)).save(root / cls / f"im{i}.jpeg", quality=90)
    res = load_index("folder", root, cache=tmp_path / "cache", progress=False)  # default cache
    assert sorted(count_decodes) == ["im0.jpeg", "im1.jpeg"]
    count_decodes.clear()
    for size in (224, 256, (320, 288)):
        got = load_images(res.index, size, cache=tmp_path / "cache", progress=False)
        assert count_decodes == []
        np.testing.assert_array_equal(got, load_images(res.index, size, progress=False))
        count_decodes.clear()


def test_a_size_above_the_base_side_gets_its_own_base_decoded_once(tmp_path, small_base, count_decodes):
    index = films(tmp_path / "films")
    cache = ImageCache(tmp_path / "cache")
    validate_images(index, cache=cache, progress=False)
    count_decodes.clear()
    first = load_images(index, 96, cache=cache, progress=False)
    assert len(count_decodes) == len(index)  # base side 96, not validation's 64
    count_decodes.clear()
    np.testing.assert_array_equal(load_images(index, 96, cache=cache, progress=False), first)
    load_images(index, 48, cache=cache, progress=False)
    assert count_decodes == []


# --------------------------------------------------------------------------- PIL's guard, bombs, memory

def test_importing_cxrnb_leaves_pils_bomb_guard_as_it_was():
    code = ("import PIL.Image as I; before = I.MAX_IMAGE_PIXELS; "
            "import cxrnb, cxrnb.images, cxrnb.validate, cxrnb.pipeline, cxrnb.plots; "
            "print(before, I.MAX_IMAGE_PIXELS)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout.split()
    assert out[0] == out[1] == str(Image.MAX_IMAGE_PIXELS)


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A 1x1 PNG whose header claims width x height: nothing to decode, a bomb by its header."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("width, height, pixels", [(8000, 8000, "64,000,000"),            # ours only
                                                   (100_000, 100_000, "10,000,000,000")])  # PIL's too
def test_a_bomb_is_caught_locally_with_a_clear_image_error(tmp_path, width, height, pixels):
    guard = Image.MAX_IMAGE_PIXELS
    bomb = _png_claiming(tmp_path / "bomb.png", width, height)
    for read in (read_gray, read_base):
        with pytest.raises(ImageError, match=rf"bomb.png: decompression bomb: .*{pixels} pixels exceeds "
                                             r"the limit of 50,000,000") as e:
            read(bomb)
        assert e.value.reason == "decompression bomb"
    assert Image.MAX_IMAGE_PIXELS == guard


def test_sixteen_bit_png_is_converted_without_a_float64_copy(tmp_path):
    h, w = 1200, 1000
    ramp = (np.add.outer(np.arange(h), 2 * np.arange(w)) + 300).astype(np.uint16)  # 12-bit data, 300..3497
    Image.fromarray(ramp).save(tmp_path / "deep.png", compress_level=1)
    tracemalloc.start()
    try:
        arr, info = read_gray(tmp_path / "deep.png")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.bit_depth == 16 and arr.dtype == np.uint8 and arr.shape == (h, w)
    assert peak < 4 * h * w, f"peak {peak / (h * w):.1f} bytes per pixel"
    expected = np.round((ramp.astype(np.float64) - 300) * (255 / 3197)).astype(np.uint8)
    np.testing.assert_array_equal(arr, expected)


def test_float_images_are_stretched_in_float32(tmp_path):
    a = np.linspace(-2.0, 6.0, 64 * 80, dtype=np.float32).reshape(64, 80)
    Image.fromarray(a).save(tmp_path / "f.tif")
    arr, info = read_gray(tmp_path / "f.tif")
    assert info.mode == "F" and arr.min() == 0 and arr.max() == 255
    assert np.all(np.diff(arr.astype(int).ravel()) >= 0)  # monotone ramp stays monotone


# --------------------------------------------------------------------------- the thread pool

def test_map_threads_keeps_order_and_stops_at_the_first_error():
    assert map_threads(lambda x: x * x, range(50), desc="t", progress=False, workers=4) == \
        [x * x for x in range(50)]
    started: list[int] = []

    def fail_first(x: int) -> int:
        started.append(x)
        if x == 0:
            raise ImageError("a.png", "corrupt image", "boom")
        return x

    with pytest.raises(ImageError, match="a.png: corrupt image: boom"):
        map_threads(fail_first, range(200), desc="t", progress=False, workers=1)
    assert len(started) < 200


# --------------------------------------------------------------------------- the cache folder

def test_cache_folder_is_two_files_per_writer_shared_and_not_grown_by_revalidation(tmp_path, small_base):
    index = films(tmp_path / "films")
    validate_images(index, cache=ImageCache(tmp_path / "cache"), progress=False)
    files = sorted(p.suffix for p in (tmp_path / "cache").iterdir())
    assert files == [".idx", ".pack"]
    size = sum(p.stat().st_size for p in (tmp_path / "cache").iterdir())
    validate_images(index, cache=ImageCache(tmp_path / "cache"), progress=False)  # a second process
    assert sum(p.stat().st_size for p in (tmp_path / "cache").iterdir()) == size
    reader = ImageCache(tmp_path / "cache", 48)
    for p in index["path"]:
        np.testing.assert_array_equal(reader.get(tmp_path / "films" / p), read_gray(tmp_path / "films" / p, 48)[0])


def test_a_writer_keeps_its_files_open_and_a_forked_child_writes_its_own(tmp_path, small_base):
    """The writer's pack and index stay open between puts (no open/close per image); a child
    forked from it (e.g. a DataLoader-style worker) must not append at the parent's offsets."""
    import multiprocessing

    index = films(tmp_path / "films")
    paths = [tmp_path / "films" / p for p in index["path"]]
    cache = ImageCache(tmp_path / "cache", 48)
    cache.read(paths[0])
    cache.read(paths[1])
    assert len(list((tmp_path / "cache").glob("*.pack"))) == 1  # two puts, one writer's files
    child = multiprocessing.get_context("fork").Process(target=lambda: [cache.read(p) for p in paths[2:]])
    child.start()
    child.join(60)
    assert child.exitcode == 0
    cache.close()
    assert len(list((tmp_path / "cache").glob("*.pack"))) == 2  # the child's own pair
    reader = ImageCache(tmp_path / "cache", 48)
    for p in paths:
        np.testing.assert_array_equal(reader.get(p), read_gray(p, 48)[0])
    cache.read(paths[0])  # a closed writer still reads, and writes again on the next miss
    assert reader.get(paths[4]) is not None


def test_threads_writing_one_cache_at_once_lose_and_mix_no_pixels(tmp_path):
    """Puts from many threads write their pixels outside the writer's lock: each image must
    still land whole at its own offset, with one index line each."""
    rng = np.random.default_rng(0)
    paths, bases = [], []
    for i in range(96):
        paths.append(tmp_path / f"f{i}.png")
        paths[-1].write_bytes(b"x" * (i + 1))  # the key needs a file: path, inode, size, mtime
        bases.append(rng.integers(0, 256, (int(rng.integers(20, 90)), int(rng.integers(20, 90))), dtype=np.uint8))
    cache = ImageCache(tmp_path / "cache")
    map_threads(lambda i: cache.put_base(paths[i], bases[i]), range(len(paths)), desc="t", progress=False, workers=8)
    cache.close()
    lines = next((tmp_path / "cache").glob("*.idx")).read_text().splitlines()
    spans = sorted((int(off), int(off) + int(h) * int(w)) for _, h, w, off in (line.split() for line in lines))
    assert len(lines) == len(paths) and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    reader = ImageCache(tmp_path / "cache")
    for p, b in zip(paths, bases):
        np.testing.assert_array_equal(reader.get_base(p), b)


def test_a_torn_cache_write_is_a_miss_not_garbage(tmp_path, small_base):
    index = films(tmp_path / "films")
    validate_images(index, cache=ImageCache(tmp_path / "cache"), progress=False)
    idx = next((tmp_path / "cache").glob("*.idx"))
    lines = idx.read_text().splitlines()
    pack = idx.with_suffix(".pack")
    off = max(int(line.split()[3]) for line in lines)
    pack.write_bytes(pack.read_bytes()[: off + 10])  # the image written last cut short
    idx.write_text("\n".join(lines) + "\nhalf-written-line 3")  # a line without its newline
    cache = ImageCache(tmp_path / "cache", 48)
    paths = [tmp_path / "films" / p for p in index["path"]]
    torn = [p for p in paths if cache.get(p) is None]
    assert len(torn) == 1
    np.testing.assert_array_equal(cache.read(torn[0]), read_gray(torn[0], 48)[0])  # decoded again
    assert all(cache.get(p) is not None for p in paths)
