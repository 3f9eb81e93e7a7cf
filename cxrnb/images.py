"""Reading image files into 8-bit grayscale arrays: the one decoder of cxrnb, and its cache.

Real chest X-ray collections mix JPEG and PNG, modes L / RGB / RGBA / P / CMYK, 16-bit
grayscale, files whose extension lies, and the odd huge scan; each case is handled here
with a clear `ImageError` instead of a crash deep in TensorFlow.

One set of pixels. The pixels of a file at a model size S (an int or (height, width)) are

    resize_gray(read_base(file, base_side(S)), S)

whoever computes them: `read_gray(file, S)`, validation filling an `ImageCache`, a pipeline
cache miss or hit (`cxrnb.pipeline`), at any size. `read_base` is the only decoder:

1. JPEGs are decoded at a reduced scale (libjpeg's 1/2, 1/4, 1/8 "draft" mode) chosen from the
   file's own size and the base side alone: the largest reduction that keeps both sides at
   least `side` pixels. Other formats are decoded in full.
2. Any mode becomes 8-bit gray (`to_gray`); EXIF orientation is applied.
3. If the shorter side is longer than `side`, the image is shrunk (box filter, aspect kept) so
   that its shorter side is exactly `side`: the "base image".

`base_side(S)` is `BASE_SIDE` for every size up to `BASE_SIDE` (the larger side of S
decides), so one base per file serves all usual model sizes: a cache filled by validation
(`cxrnb index --cache`) is reused at 224, 256, 299 or 384 without decoding again. A larger
model size has its own base (decoded once, then cached beside the first).

PIL's decompression-bomb guard (`PIL.Image.MAX_IMAGE_PIXELS`) is left as it is; `MAX_PIXELS`
is a stricter limit checked from the file header before any pixel is decoded.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Refuse images with more pixels than this (a decompression bomb, or a scan that would eat
#: gigabytes once decoded); below PIL's own limit, so PIL never has to warn about a file we keep.
MAX_PIXELS = 50_000_000
#: Images smaller than this on either side are refused: no usable anatomy.
MIN_SIDE = 32
#: Shorter side of the base image every model size up to this one is resized from (twice the
#: common 224 input, so a 224 model still averages over every source pixel of the base).
BASE_SIDE = 448

Size = int | tuple[int, int]
T = TypeVar("T")
R = TypeVar("R")


class ImageError(ValueError):
    """An image file that cannot be used; `reason` is a short category for reports."""

    def __init__(self, path: str | Path, reason: str, detail: str):
        super().__init__(f"{path}: {reason}: {detail}")
        self.path = str(path)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageInfo:
    """What validation records about a decodable image (its stored size, before any resizing)."""

    width: int
    height: int
    mode: str
    format: str
    bit_depth: int


def _bit_depth(mode: str) -> int:
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return 16
    if mode in ("I", "F"):
        return 32
    return 1 if mode == "1" else 8


def _hw(size: Size) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


def base_side(size: Size) -> int:
    """Shorter side of the base image that pixels at `size` are resized from (see module doc)."""
    return max(BASE_SIDE, *_hw(size))


def _stretch(img: Image.Image) -> Image.Image:
    """16-/32-bit gray to 8 bits, stretching the image's own range to 0..255.

    Dividing by 257 would leave 12-bit detector data (0..4095) almost black; clipping at 255
    (PIL's convert("L")) would turn it white. 16-bit data goes through a lookup table inside
    PIL (no NumPy copy of the full image); other data is scaled in place in float32.
    """
    lo, hi = (float(v) for v in img.getextrema())
    if hi <= lo:
        return Image.new("L", img.size)
    scale = 255.0 / (hi - lo)
    if img.mode != "F" and lo >= 0 and hi < 2**16:
        lut = np.round(np.clip(np.arange(2**16) - lo, 0, hi - lo) * scale).astype(np.uint8)
        return img.convert("I").point(lut.tolist(), "L")
    f = np.array(img, dtype=np.float32)
    f -= lo
    f *= scale
    np.rint(f, out=f)
    return Image.fromarray(f.astype(np.uint8))


def to_gray(img: Image.Image) -> Image.Image:
    """Any PIL mode as an 8-bit gray ("L") image; alpha is dropped (radiographs carry none)."""
    mode = img.mode
    if mode == "L":
        return img
    if mode.startswith("I") or mode == "F":
        return _stretch(img)
    if mode in ("LA", "La"):
        return img.getchannel(0)
    if mode in ("P", "PA"):
        img = img.convert("RGBA")
    if img.mode not in ("RGB", "1"):
        img = img.convert("RGB")
    return img.convert("L")


def resize_gray(arr: np.ndarray, size: Size) -> np.ndarray:
    """Resize a uint8 gray array to `size` (int or (height, width)): box filter when shrinking,
    bilinear otherwise. The only resize behind training pixels (see module doc)."""
    hw = _hw(size)
    if arr.shape == hw:
        return arr
    shrink = arr.shape[0] >= hw[0] and arr.shape[1] >= hw[1]
    resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(arr).resize((hw[1], hw[0]), resample))


def _bomb_detail(e: Exception, max_pixels: int) -> str:
    """PIL's own guard refused the file at open; restate its pixel count like ours."""
    m = re.search(r"\((\d+) pixels\)", str(e))
    return f"{int(m.group(1)):,} pixels exceeds the limit of {max_pixels:,}" if m else str(e)


def _decode(path: str | Path, side: int | None, max_pixels: int, min_side: int) -> tuple[np.ndarray, ImageInfo]:
    """The decoder: full resolution (`side` None) or the base image of shorter side `side`."""
    path = Path(path)
    try:
        nbytes = path.stat().st_size
    except FileNotFoundError:
        raise ImageError(path, "missing file", "listed in the index but not on disk") from None
    except OSError as e:
        raise ImageError(path, "unreadable file", f"{type(e).__name__}: {e.strerror or e}") from None
    if nbytes == 0:
        raise ImageError(path, "empty file", "zero bytes")
    try:
        with Image.open(path) as img:
            w, h = img.size  # from the header: nothing is decoded yet
            if w * h > max_pixels:
                raise ImageError(path, "decompression bomb",
                                 f"{w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,}")
            if min(w, h) < min_side:
                raise ImageError(path, "too small", f"{w}x{h}, need at least {min_side} px a side")
            info = ImageInfo(w, h, img.mode, img.format or "?", _bit_depth(img.mode))
            if side is not None and img.format == "JPEG":
                img.draft("L", (side, side))
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
            gray = to_gray(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(path, "not an image", f"{nbytes} bytes, format not recognised") from None
    except Image.DecompressionBombError as e:
        raise ImageError(path, "decompression bomb", _bomb_detail(e, max_pixels)) from None
    except PermissionError as e:
        raise ImageError(path, "unreadable file", f"PermissionError: {e.strerror or e}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(path, "corrupt image", f"{type(e).__name__}: {e}") from None
    gw, gh = gray.size
    if side is not None and min(gw, gh) > side:
        k = side / min(gw, gh)
        new = (side, round(gh * k)) if gw <= gh else (round(gw * k), side)
        gray = gray.resize(new, Image.Resampling.BOX)
    return np.asarray(gray, dtype=np.uint8), info


def read_base(
    path: str | Path,
    side: int | None = None,
    *,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
) -> tuple[np.ndarray, ImageInfo]:
    """The base image of `path` (uint8, shorter side `side`, default `BASE_SIDE`) and its facts.

    Every training pixel is derived from this by `resize_gray` (see module doc). Raises
    `ImageError` with a report-friendly `reason` for every kind of bad file.
    """
    return _decode(path, BASE_SIDE if side is None else int(side), max_pixels, min_side)


def read_gray(
    path: str | Path,
    size: Size | None = None,
    *,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
) -> tuple[np.ndarray, ImageInfo]:
    """Decode `path` to a 2-D uint8 grayscale array: at `size` (an int or (height, width)), the
    training pixels, ``resize_gray(read_base(path, base_side(size)), size)``; without `size`, the
    whole image at full resolution (for inspection). Raises `ImageError` for a bad file.
    """
    if size is None:
        return _decode(path, None, max_pixels, min_side)
    base, info = read_base(path, base_side(size), max_pixels=max_pixels, min_side=min_side)
    return resize_gray(base, size), info


def map_threads(fn: Callable[[T], R], items: Sequence[T] | Iterable[T], *, desc: str, progress: bool = True,
                workers: int | None = None, leave: bool = True) -> list[R]:
    """`[fn(x) for x in items]` in a thread pool, in order, with a progress bar.

    PIL releases the GIL while it decodes and resizes, so the threads keep every core busy.
    The first exception is raised at once and the items not yet started are cancelled.
    `workers` defaults to the cores this process may use, plus one.
    """
    from tqdm import tqdm

    items = list(items)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    pool = ThreadPoolExecutor(workers or min(8, cores + 1))
    try:
        return list(tqdm(pool.map(fn, items), total=len(items), desc=desc, unit="img",
                         disable=not progress, leave=leave))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class ImageCache:
    """On-disk cache of base images (see module doc), one `.npy` file per file and base side.

    Entries are keyed by the file's resolved path, byte size and mtime, so an edited or
    replaced file is a miss, never stale pixels. `size` is the default size `get` and `read`
    return (None: the base image itself); any size can be asked for, derived from the stored
    base without decoding when `base_side(size)` matches one already stored.
    """

    _VERSION = "base-v1"

    def __init__(self, directory: str | Path, size: Size | None = None):
        self.directory = Path(directory)
        self.size = None if size is None else _hw(size)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _file(self, path: str | Path, side: int) -> Path:
        p = Path(path).resolve()
        st = p.stat()
        key = f"{p}|{st.st_size}|{st.st_mtime_ns}|{side}|{self._VERSION}"
        h = hashlib.sha1(key.encode()).hexdigest()
        return self.directory / h[:2] / f"{h}.npy"

    def _side(self, size: Size | None) -> tuple[Size | None, int]:
        size = self.size if size is None else size
        return size, (BASE_SIDE if size is None else base_side(size))

    def get_base(self, path: str | Path, side: int | None = None) -> np.ndarray | None:
        """The stored base image of `path` (default side `BASE_SIDE`), or None when absent or stale."""
        try:
            return np.load(self._file(path, BASE_SIDE if side is None else side))
        except (OSError, ValueError):
            return None

    def put_base(self, path: str | Path, base: np.ndarray, side: int | None = None) -> None:
        """Store `base`, the result of ``read_base(path, side)``; atomic, so parallel readers
        never see half a file."""
        f = self._file(path, BASE_SIDE if side is None else side)
        f.parent.mkdir(exist_ok=True)
        tmp = f.with_name(f"{f.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npy")
        np.save(tmp, np.ascontiguousarray(base, dtype=np.uint8))
        tmp.replace(f)

    def get(self, path: str | Path, size: Size | None = None) -> np.ndarray | None:
        """Pixels of `path` at `size` (default: this cache's) from the stored base, or None on a miss."""
        size, side = self._side(size)
        base = self.get_base(path, side)
        return base if base is None or size is None else resize_gray(base, size)

    def read(self, path: str | Path, size: Size | None = None) -> np.ndarray:
        """Pixels of `path` at `size` (default: this cache's), decoding and storing the base on a miss."""
        size, side = self._side(size)
        base = self.get_base(path, side)
        if base is None:
            base, _ = read_base(path, side)
            self.put_base(path, base, side)
        return base if size is None else resize_gray(base, size)
