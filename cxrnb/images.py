"""Reading one image file into an 8-bit grayscale array: the single decoder of cxrnb.

Validation (`cxrnb.validate`) and the tf.data pipeline (`cxrnb.pipeline`) both call
`read_gray`, so an image that passed validation decodes the same way in training.
Real chest X-ray collections mix JPEG and PNG, modes L / RGB / RGBA / P / CMYK, 16-bit
grayscale, files whose extension lies, and the odd huge scan; each case is handled here
with a clear `ImageError` instead of a crash deep in TensorFlow.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Refuse images with more pixels than this (a decompression bomb, or a scan that
#: would eat gigabytes once decoded). The largest real CXRs are about 4,300 x 3,500.
MAX_PIXELS = 50_000_000
#: Images smaller than this on either side are refused: no usable anatomy.
MIN_SIDE = 32

# We enforce MAX_PIXELS ourselves, with a message that names the file.
Image.MAX_IMAGE_PIXELS = None


class ImageError(ValueError):
    """An image file that cannot be used; `reason` is a short category for reports."""

    def __init__(self, path: str | Path, reason: str, detail: str):
        super().__init__(f"{path}: {reason}: {detail}")
        self.path = str(path)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageInfo:
    """What validation records about a decodable image (before any resizing)."""

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


def _to_gray_array(img: Image.Image) -> np.ndarray:
    """Convert any PIL mode to a 2-D uint8 array without clipping high-bit data to garbage."""
    mode = img.mode
    if mode in ("L", "1"):
        return np.asarray(img.convert("L"), dtype=np.uint8)
    if mode.startswith("I") or mode == "F":
        # 16-/32-bit grayscale: stretch the image's own range to 0..255. Dividing by 257
        # would leave 12-bit detector data (0..4095) almost black; clipping at 255 (PIL's
        # convert("L")) would turn it white.
        a = np.asarray(img, dtype=np.float64)
        if a.ndim == 3:
            a = a.mean(axis=2)
        lo, hi = float(a.min()), float(a.max())
        if hi <= lo:
            return np.zeros(a.shape, dtype=np.uint8)
        return np.round((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    if mode in ("LA", "La"):
        return np.asarray(img.getchannel(0), dtype=np.uint8)
    if mode in ("P", "PA"):
        img = img.convert("RGBA")
    if mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBA", "RGBa", "RGBX") or img.mode == "RGBA":
        img = img.convert("RGB")  # alpha is dropped: radiographs carry no transparency
    return np.asarray(img.convert("L"), dtype=np.uint8)


def resize_gray(arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize a uint8 gray array to (height, width): box filter when shrinking, bilinear otherwise."""
    if arr.shape == tuple(hw):
        return arr
    shrink = arr.shape[0] >= hw[0] and arr.shape[1] >= hw[1]
    resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(arr).resize((hw[1], hw[0]), resample))


def read_gray(
    path: str | Path,
    size: int | tuple[int, int] | None = None,
    *,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
) -> tuple[np.ndarray, ImageInfo]:
    """Decode `path` to a 2-D uint8 grayscale array, optionally resized to `size`.

    `size` is an int (square) or (height, width). When given, JPEGs are decoded at a reduced
    scale first (libjpeg's 1/2, 1/4, 1/8 "draft" mode, like `tf.io.decode_jpeg(ratio=...)`)
    as long as the result stays at least twice the target, then resized with a box filter.
    Raises `ImageError` with a report-friendly `reason` for every kind of bad file.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(path, "missing file", "listed in the index but not on disk")
    nbytes = path.stat().st_size
    if nbytes == 0:
        raise ImageError(path, "empty file", "zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's own bomb/EXIF warnings: we report instead
            with Image.open(path) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageError(
                        path, "decompression bomb",
                        f"{w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,}",
                    )
                if min(w, h) < min_side:
                    raise ImageError(path, "too small", f"{w}x{h}, need at least {min_side} px a side")
                info = ImageInfo(w, h, img.mode, img.format or "?", _bit_depth(img.mode))
                target = None if size is None else ((size, size) if isinstance(size, int) else tuple(size))
                if target is not None and img.format == "JPEG":
                    img.draft(img.mode, (2 * target[1], 2 * target[0]))
                img.load()
                img = ImageOps.exif_transpose(img)
                arr = _to_gray_array(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(path, "not an image", f"{nbytes} bytes, format not recognised") from None
    except Image.DecompressionBombError as e:  # pragma: no cover - MAX_IMAGE_PIXELS is disabled
        raise ImageError(path, "decompression bomb", str(e)) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(path, "corrupt image", f"{type(e).__name__}: {e}") from None
    if target is not None:
        arr = resize_gray(arr, target)
    return arr, info


class ImageCache:
    """On-disk cache of decoded, resized uint8 images, keyed by file, size, mtime and target size.

    The validation pass decodes every image once anyway; handing it a cache lets it keep the
    resized result so the pipeline's first epoch (and every later run) never decodes again.
    Editing or replacing a file changes its size or mtime and so its key: no stale pixels.
    """

    def __init__(self, directory: str | Path, size: int | tuple[int, int]):
        self.directory = Path(directory)
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _file(self, path: str | Path) -> Path:
        import hashlib

        p = Path(path).resolve()
        st = p.stat()
        key = f"{p}|{st.st_size}|{st.st_mtime_ns}|{self.size[0]}x{self.size[1]}"
        h = hashlib.sha1(key.encode()).hexdigest()
        return self.directory / h[:2] / f"{h}.npy"

    def get(self, path: str | Path) -> np.ndarray | None:
        """The cached array for `path`, or None when absent or stale."""
        try:
            return np.load(self._file(path))
        except (OSError, ValueError):
            return None

    def put(self, path: str | Path, array: np.ndarray) -> None:
        f = self._file(path)
        f.parent.mkdir(exist_ok=True)
        tmp = f.with_suffix(f".{id(array)}.tmp.npy")
        np.save(tmp, np.ascontiguousarray(array, dtype=np.uint8))
        tmp.replace(f)  # atomic: parallel readers never see half a file

    def read(self, path: str | Path) -> np.ndarray:
        """Cached pixels of `path` at this cache's size, decoding (and storing) on a miss."""
        arr = self.get(path)
        if arr is None:
            arr, _ = read_gray(path, self.size)
            self.put(path, arr)
        return arr
