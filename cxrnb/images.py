"""Reading image files into 8-bit grayscale arrays: the one decoder of cxrnb, and its cache.

Real chest X-ray collections mix JPEG, PNG and DICOM (found by its ``DICM`` preamble whatever
the file is called, and mapped to 8 bits by `cxrnb.dicom`'s documented rule), modes L / RGB / RGBA / P / CMYK, 16-bit
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
3. If the shorter side is still at least twice `side` (a large PNG, a JPEG beyond 1/8), it is
   reduced by the integer factor k = shorter // side (each output pixel the mean of a k x k
   block). The result, with its shorter side between `side` and 2 x `side` (or the whole image,
   when it is smaller than that), is the "base image".
   No resampling happens here beyond these cheap exact reductions: validation, which decodes
   every file, pays for decoding and little else.

`base_side(S)` is `BASE_SIDE` for every size up to `BASE_SIDE` (the larger side of S
decides), so one base per file serves all usual model sizes: a cache filled by validation
(`cxrnb index --cache`) is reused at 224, 256, 299 or 320 without decoding again. A larger
model size has its own base (decoded once, then cached beside the first).

PIL's decompression-bomb guard (`PIL.Image.MAX_IMAGE_PIXELS`) is left as it is; `MAX_PIXELS`
is a stricter limit checked from the file header before any pixel is decoded. A file so large
that PIL refuses it at open is reported the same way ("decompression bomb"); PIL warns about
one between its limit and twice that, which is then refused here.
"""
from __future__ import annotations

import hashlib
import mmap
import os
import re
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .dicom import is_dicom_head

#: Refuse images with more pixels than this (a decompression bomb, or a scan that would eat
#: gigabytes once decoded); below PIL's own limit, so PIL never has to warn about a file we keep.
MAX_PIXELS = 50_000_000
#: Images smaller than this on either side are refused: no usable anatomy.
MIN_SIDE = 32
#: Least shorter side of the base image that every model size up to this one is resized from
#: (the usual ImageNet input sizes 224-320 share one base; a base stays a few hundred KB).
BASE_SIDE = 320

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
    """Resize a uint8 gray array to `size` (int or (height, width)); the only resize behind
    training pixels (see module doc).

    Shrinking takes the means of whole k x k blocks first (k the smaller whole factor, when at
    least 2), then a box filter to the exact size: nearly one box filter's result at a fraction
    of its cost. Enlarging (an image smaller than the model's input) is bilinear.
    """
    hw = _hw(size)
    if arr.shape == hw:
        return arr
    img = Image.fromarray(arr)
    if arr.shape[0] >= hw[0] and arr.shape[1] >= hw[1]:
        k = min(arr.shape[0] // hw[0], arr.shape[1] // hw[1])
        if k >= 2:
            img = img.reduce(k)
        resample = Image.Resampling.BOX
    else:
        resample = Image.Resampling.BILINEAR
    return np.asarray(img.resize((hw[1], hw[0]), resample))


def _bomb_detail(e: Exception, max_pixels: int) -> str:
    """PIL's own guard refused the file at open; restate its pixel count like ours."""
    m = re.search(r"\((\d+) pixels\)", str(e))
    return f"{int(m.group(1)):,} pixels exceeds the limit of {max_pixels:,}" if m else str(e)


def _unreadable(path: Path, e: OSError) -> ImageError:
    """The report entry of a file the OS would not open or read (permission, I/O error, a folder)."""
    return ImageError(path, "unreadable file", f"{type(e).__name__}: {e.strerror or e}")


def _decode(path: str | Path, side: int | None, max_pixels: int, min_side: int) -> tuple[np.ndarray, ImageInfo]:
    """The decoder: full resolution (`side` None) or the base image of shorter side `side`.

    The file is opened once: its size, its first bytes (DICOM or not) and PIL's decoding all
    come from the one open file, which matters when validation reads a collection of small films.
    """
    path = Path(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise ImageError(path, "missing file", "listed in the index but not on disk") from None
    except OSError as e:
        raise _unreadable(path, e) from None
    with f:
        nbytes = os.fstat(f.fileno()).st_size
        if nbytes == 0:
            raise ImageError(path, "empty file", "zero bytes")
        try:
            head = f.read(132)
        except OSError as e:  # an I/O error after a successful open
            raise _unreadable(path, e) from None
        if is_dicom_head(head):
            gray = _decode_dicom(path, side, max_pixels, min_side)
            info = ImageInfo(gray.info["width"], gray.info["height"], gray.info["mode"], "DICOM", gray.info["bit_depth"])
        else:
            f.seek(0)
            gray, info = _decode_pil(path, f, side, max_pixels, min_side, nbytes)
    k = 1 if side is None else min(gray.size) // side
    if k >= 2:
        gray = gray.reduce(k)
    return np.asarray(gray, dtype=np.uint8), info


def _decode_dicom(path: Path, side: int | None, max_pixels: int, min_side: int) -> Image.Image:
    """A DICOM file as an 8-bit "L" image (`cxrnb.dicom.read_pixels`); facts in ``.info``."""
    from .dicom import DicomError, read_pixels

    try:
        arr, facts = read_pixels(path, max_pixels, side)
    except DicomError as e:
        raise ImageError(path, e.reason, e.detail) from None
    h, w = facts["height"], facts["width"]  # stored size (a JPEG frame may be draft-reduced)
    if min(w, h) < min_side:
        raise ImageError(path, "too small", f"{w}x{h}, need at least {min_side} px a side")
    img = Image.fromarray(arr)
    img.info.update(facts)  # stored width/height, photometric as mode, BitsStored
    return img


def _decode_pil(path: Path, f: BinaryIO, side: int | None, max_pixels: int, min_side: int, nbytes: int
                ) -> tuple[Image.Image, ImageInfo]:
    """`path`, open as `f`, a PNG/JPEG/... file, as an 8-bit "L" image (JPEG draft-decoded for
    `side`) and its facts."""
    try:
        with Image.open(f) as img:
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
        raise _unreadable(path, e) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(path, "corrupt image", f"{type(e).__name__}: {e}") from None
    return gray, info


def read_base(
    path: str | Path,
    side: int | None = None,
    *,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
) -> tuple[np.ndarray, ImageInfo]:
    """The base image of `path` (uint8; shorter side from `side`, default `BASE_SIDE`, to twice
    that, or the whole image when it is smaller) and its facts.

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


def default_workers() -> int:
    """Threads of `map_threads`: the cores this process may use, plus one (at most 8)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(8, cores + 1)


def map_threads(fn: Callable[[T], R], items: Sequence[T] | Iterable[T], *, desc: str, progress: bool = True,
                workers: int | None = None, leave: bool = True) -> list[R]:
    """`[fn(x) for x in items]` in a thread pool, in order, with a progress bar.

    PIL releases the GIL while it decodes and resizes, so the threads keep every core busy.
    The first exception is raised at once and the items not yet started are cancelled.
    `workers` defaults to `default_workers()`.
    """
    from tqdm import tqdm

    items = list(items)
    pool = ThreadPoolExecutor(workers or default_workers())
    try:
        return list(tqdm(pool.map(fn, items), total=len(items), desc=desc, unit="img",
                         disable=not progress, leave=leave))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _close_fds(fds: tuple[int, ...], pid: int) -> None:
    """Close an `ImageCache` writer's files, in the process that opened them."""
    if os.getpid() == pid:
        for fd in fds:
            os.close(fd)


class ImageCache:
    """On-disk cache of base images (see module doc): a folder of append-only pack files.

    Each writer (one `ImageCache` object) appends raw base images to its own ``<id>.pack`` and
    one line per image (key, height, width, offset) to ``<id>.idx``, the data before its line;
    readers load every ``.idx`` of the folder and map the packs read-only, so reading an image is a
    view, not a copy. A validation pass writes two files, not one per image, and a first epoch
    opens none per image.
    Several processes may share the folder. Keys are the file's absolute path (hashed), inode,
    byte size and mtime and the base side, so an edited or replaced file is a miss, never stale pixels (its
    old entry stays until the folder is deleted).

    `size` is the default size `get` and `read` return (None: the base image itself); any size
    can be asked for, derived from a stored base without decoding when `base_side(size)` is
    the side of one already stored.
    """

    _VERSION = "base-v2"

    def __init__(self, directory: str | Path, size: Size | None = None):
        self.directory = Path(directory)
        self.size = None if size is None else _hw(size)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._entries: dict[str, tuple[str, int, int, int]] = {}  # key -> (pack, h, w, offset)
        self._read_upto: dict[str, int] = {}  # .idx file name -> bytes already loaded
        self._maps: dict[str, mmap.mmap] = {}  # pack name -> read-only map (see `_mapped`)
        self._lock = threading.Lock()
        self._writer: str | None = None  # this object's pack/idx name, made on the first put
        self._written = 0
        self._fds: tuple[int, int] | None = None  # (pack, idx) kept open while this object writes
        self._pid = os.getpid()  # a forked child starts its own pair (`_files`)
        self._closer: weakref.finalize | None = None

    def _key(self, path: str | Path, side: int) -> str:
        st = os.stat(path)
        name = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:16]
        return f"{name}-{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}-{side}-{self._VERSION}"

    def _scan(self) -> None:
        """Load the lines other writers (and processes) appended since the last scan."""
        for e in os.scandir(self.directory):
            if not e.name.endswith(".idx") or e.stat().st_size <= self._read_upto.get(e.name, 0):
                continue
            with open(e.path, "rb") as f:
                f.seek(self._read_upto.get(e.name, 0))
                data = f.read()
            done = data.rfind(b"\n") + 1  # a line still being written is read next time
            self._read_upto[e.name] = self._read_upto.get(e.name, 0) + done
            pack = e.name[:-4] + ".pack"
            try:
                end = os.stat(self.directory / pack).st_size
            except OSError:
                continue
            for line in data[:done].decode().splitlines():
                key, h, w, off = line.split()
                if int(off) + int(h) * int(w) <= end:  # a pack cut short (a crash) loses its tail only
                    self._entries[key] = (pack, int(h), int(w), int(off))

    def get_base(self, path: str | Path, side: int | None = None) -> np.ndarray | None:
        """The stored base image of `path` (default side `BASE_SIDE`), or None when absent or stale."""
        try:
            key = self._key(path, BASE_SIDE if side is None else side)
        except OSError:
            return None
        entry = self._entries.get(key)
        if entry is None:
            with self._lock:
                self._scan()
            entry = self._entries.get(key)
            if entry is None:
                return None
        pack, h, w, off = entry
        data = self._mapped(pack, off + h * w)
        if data is None:
            self._entries.pop(key, None)
            return None
        return np.frombuffer(data, np.uint8, h * w, off).reshape(h, w)

    def _mapped(self, pack: str, end: int) -> mmap.mmap | None:
        """Pack file `pack` mapped read-only, at least `end` bytes long (mapped again when it has
        grown since), or None when it is gone or shorter. Bases are returned as read-only views
        of the map: no read call and no copy per image."""
        mm = self._maps.get(pack)
        if mm is None or len(mm) < end:
            try:
                with open(self.directory / pack, "rb") as f:
                    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):  # missing, unreadable, or empty
                return None
            if len(mm) < end:
                return None
            self._maps[pack] = mm  # an older, shorter map stays alive while views of it exist
        return mm

    def _files(self) -> tuple[int, int]:
        """This writer's (pack, idx) descriptors, opened on the first put and kept open (two
        open/close pairs per image cost as much as a small film's decoding); a process forked
        from the writer gets its own pair of files, never the parent's offsets."""
        if not self._writing():
            self._pid, self._written = os.getpid(), 0
            self._writer = f"{self._pid}-{uuid.uuid4().hex[:12]}"
            pack = os.open(self.directory / (self._writer + ".pack"), os.O_WRONLY | os.O_CREAT, 0o644)
            idx = os.open(self.directory / (self._writer + ".idx"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._fds = (pack, idx)
            self._closer = weakref.finalize(self, _close_fds, self._fds, self._pid)
        return self._fds

    def _writing(self) -> bool:
        """Whether this object's writer files are open in this process (not closed, not forked)."""
        return self._fds is not None and self._pid == os.getpid()

    def close(self) -> None:
        """Close this writer's files (also done when the object is collected); a later put opens new ones."""
        if self._closer is not None:
            self._closer()
        self._fds = self._closer = None

    def put_base(self, path: str | Path, base: np.ndarray, side: int | None = None) -> None:
        """Store `base`, the result of ``read_base(path, side)``, unless it is stored already.

        The folder's other index files are read at the first put only (a second validation of the
        same files stores nothing new); a file another process stores at the same moment may be
        stored twice, which costs disk, never pixels. The pixels go to the pack before the index
        line that points at them (one append), so a reader never sees a line whose image is not
        all there; the lock covers the bookkeeping, not the write, so threads write in parallel.
        """
        key = self._key(path, BASE_SIDE if side is None else side)
        data = np.ascontiguousarray(base, dtype=np.uint8)
        with self._lock:
            if not self._writing():  # the first put: learn what other writers stored
                self._scan()
            if key in self._entries:
                return
            pack_fd, idx_fd = self._files()
            pack, idx = self._writer + ".pack", self._writer + ".idx"
            off = self._written
            self._written += data.nbytes
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += os.pwrite(pack_fd, view[done:], off + done)
        line = f"{key} {data.shape[0]} {data.shape[1]} {off}\n".encode()
        with self._lock:
            if os.write(idx_fd, line) != len(line):  # a short append (disk full): say so, lose nothing silently
                raise OSError(f"{self.directory / idx}: short write to the cache index")
            self._entries[key] = (pack, data.shape[0], data.shape[1], off)
            self._read_upto[idx] = self._read_upto.get(idx, 0) + len(line)  # `_scan` need not read it back

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

    def _side(self, size: Size | None) -> tuple[Size | None, int]:
        size = self.size if size is None else size
        return size, (BASE_SIDE if size is None else base_side(size))
