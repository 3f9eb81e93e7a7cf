"""Rendering one synthetic chest radiograph (and its lung and lesion masks): `render_image`.

One frontal film is drawn from smooth analytic shapes (body, lungs, heart, diaphragm, ribs,
clavicles, spine, vessels) on precomputed coordinate grids, then a finding (bacterial or viral
pneumonia, COVID-19, effusion), exposure, quantum noise and, when asked, a burnt-in marker.

Everything is a pure function of its arguments: each patient, image, lesion and marker has its
own random stream, ``numpy.random.default_rng(SeedSequence([seed, patient, ..., tag]))``, so
the same image can be re-rendered with another label or with/without the shortcut marker
(the counterfactuals of the shortcut lesson).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import ndimage

CLASSES = ("normal", "pneumonia", "covid", "effusion")
SUBTYPES = ("bacteria", "virus")
VIEWS = ("PA", "AP", "AP Supine")

# Tags that separate the random streams of one patient (never reuse a number; 102 was the
# generator's own patient split, now `cxrnb.splits`).
_T_ANATOMY, _T_META, _T_SUBTYPE, _T_LESION, _T_POSE, _T_NOISE, _T_LESION_IMG, _T_MARKER, \
    _T_SHORTCUT, _T_VIEW = range(1, 11)
_T_CLASSES = 101

def _rng(*key: int) -> np.random.Generator:
    """An independent generator for one (seed, patient, ..., tag) key: never global state."""
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


# --------------------------------------------------------------------------- argument checks

def _check_unit(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= v <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return v


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _check_label(name: str, label: str) -> str:
    if label not in CLASSES:
        raise ValueError(f"{name}: unknown class {label!r}; allowed: {list(CLASSES)}")
    return label


# --------------------------------------------------------------------------- per-patient draws

@dataclass(frozen=True)
class _Anatomy:
    """Shape parameters of one patient, in anatomical units (x: -1 image left .. 1 right, y down)."""

    body_w: float      # half-width of the torso
    neck_w: float      # half-width of the neck
    shoulder_y: float  # height where the neck widens into the shoulders
    lung_xe: tuple     # per side (image left = patient right, image right = patient left): lateral centre
    lung_ye: tuple
    lung_ae: tuple
    lung_be: tuple
    dome_y: tuple      # top of each diaphragm dome
    dome_x: tuple
    dome_k: tuple
    med_w: float       # half-width of the upper mediastinum
    knob: float        # aortic knob bulge (image right)
    heart_x: float
    heart_y: float
    heart_a: float
    heart_b: float
    heart_rot: float
    spine_w: float
    rib_top: float
    rib_n: float
    rib_curv: float
    rib_peak: float
    clav_y: float
    clav_slope: float
    air: float         # how much darker the lungs are than soft tissue
    breast: float      # breast shadow strength (0 for male patients)
    bubble: float      # gastric bubble strength
    vessel_seed: int


def _anatomy_var(difficulty: float) -> float:
    """How much anatomy varies between patients: grows with difficulty."""
    return 0.6 + 0.8 * difficulty


@lru_cache(maxsize=4096)
def _patient_meta(seed: int, patient: int) -> tuple[str, int, str]:
    """(sex, age, pneumonia subtype) of a patient: independent of label, images and difficulty."""
    r = _rng(seed, patient, _T_META)
    sex = "F" if r.random() < 0.45 else "M"
    age = int(np.clip(round(r.normal(52, 17)), 18, 92))
    subtype = "bacteria" if _rng(seed, patient, _T_SUBTYPE).random() < 2 / 3 else "virus"
    return sex, age, subtype


@lru_cache(maxsize=4096)
def _anatomy(seed: int, patient: int, difficulty: float) -> _Anatomy:
    """Draw the anatomy of a patient (the same for all their images and labels)."""
    r = _rng(seed, patient, _T_ANATOMY)
    s = _anatomy_var(difficulty)
    sex = _patient_meta(seed, patient)[0]
    z = r.standard_normal(40)
    f = 0.96 if sex == "F" else 1.0

    def n(i: int, mean: float, sd: float) -> float:
        return float(mean + sd * s * z[i])

    lung_w = n(0, 0.42, 0.03) * f
    lung_h = n(1, 0.93, 0.05) * f
    lr = n(2, 0.0, 0.015)  # left/right asymmetry
    dome = n(3, 0.38, 0.035)
    return _Anatomy(
        body_w=float(np.clip(n(4, 0.84, 0.035) * f, 0.74, 0.92)),
        neck_w=n(5, 0.22, 0.02),
        shoulder_y=n(6, -0.80, 0.03),
        lung_xe=(0.36 * f + lr, 0.36 * f - lr),
        lung_ye=(n(7, 0.28, 0.025), n(8, 0.30, 0.025)),
        lung_ae=(lung_w + n(9, 0, 0.01), lung_w + n(10, 0, 0.01)),
        lung_be=(lung_h, lung_h + n(11, 0.01, 0.015)),
        dome_y=(dome, dome + n(12, 0.04, 0.02)),
        dome_x=(n(13, 0.38, 0.03), n(14, 0.40, 0.03)),
        dome_k=(n(15, 1.1, 0.15), n(16, 1.1, 0.15)),
        med_w=n(17, 0.085, 0.01),
        knob=max(0.0, n(18, 0.05, 0.015)),
        heart_x=n(19, 0.11, 0.02),
        heart_y=n(20, 0.32, 0.025),
        heart_a=n(21, 0.35, 0.03),
        heart_b=n(22, 0.24, 0.015),
        heart_rot=n(23, 0.60, 0.08),
        spine_w=n(24, 0.075, 0.006),
        rib_top=n(25, -0.78, 0.03),
        rib_n=n(26, 9.0, 0.4),
        rib_curv=n(27, 1.05, 0.12),
        rib_peak=n(28, 0.28, 0.03),
        clav_y=n(29, -0.56, 0.03),
        clav_slope=n(30, 0.16, 0.04),
        air=float(np.clip(n(31, 0.72, 0.04), 0.55, 0.9)),
        breast=float(np.clip(n(32, 0.10, 0.03), 0.03, 0.2)) if sex == "F" else 0.0,
        bubble=float(np.clip(n(33, 0.35, 0.12), 0.0, 0.6)),
        vessel_seed=int(r.integers(2**31)),
    )


@dataclass(frozen=True)
class _Pose:
    """Per-image acquisition: position, exposure, contrast, noise; the view."""

    dx: float
    dy: float
    rot: float
    scale: float
    expo: float
    gamma: float
    black: float
    white: float
    view: str


def _image_view(seed: int, patient: int, image: int) -> str:
    """View of one image: mostly PA, some AP, a few AP Supine."""
    u = _rng(seed, patient, image, _T_VIEW).random()
    return "PA" if u < 0.7 else ("AP" if u < 0.92 else "AP Supine")


def _pose(seed: int, patient: int, image: int, difficulty: float, view: str | None = None,
          likeness: float = 0.0) -> _Pose:
    """Shift, tilt, magnification and exposure of one image; `view` None: the image's own draw.

    `likeness` in [0, 1] is the share of this variation that belongs to the patient rather than
    to the film (same position and technique on every film of a patient, as with follow-up films
    of one bed-bound patient): 0 draws each film independently, 1 gives every film of a patient
    the same pose. The spread between patients stays the same whatever its value.
    """
    s = _anatomy_var(difficulty)
    z = _rng(seed, patient, image, _T_POSE).standard_normal(8)
    if likeness:
        zp = _rng(seed, patient, _T_POSE, 1).standard_normal(8)
        z = math.sqrt(likeness) * zp + math.sqrt(1.0 - likeness) * z
    view = view or _image_view(seed, patient, image)
    return _Pose(
        dx=float(0.03 * s * z[0]), dy=float(0.03 * s * z[1]),
        rot=float(math.radians(2.0 * s * z[2])),
        scale=float(1.0 + 0.035 * s * z[3]) * (1.04 if view != "PA" else 1.0),
        expo=float(np.clip(1.55 + 0.18 * s * z[4], 1.1, 2.1)),
        gamma=float(np.clip(1.45 + 0.15 * s * z[5], 1.1, 1.9)),
        black=float(np.clip(0.04 + 0.02 * s * z[6], 0.0, 0.12)),
        white=float(np.clip(0.95 + 0.03 * s * z[7], 0.82, 1.0)),
        view=view,
    )


# --------------------------------------------------------------------------- drawing helpers

@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1] (u across, v down), float32, read-only."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    u = np.broadcast_to(t[None, :], (size, size)).copy()
    v = np.broadcast_to(t[:, None], (size, size)).copy()
    u.flags.writeable = False
    v.flags.writeable = False
    return u, v


def _smooth_noise(r: np.random.Generator, size: int, cells: int,
                  coarse: tuple[int, float] | None = None) -> np.ndarray:
    """Zero-mean random field with about `cells` blobs across (unit std), at full `size`.

    Drawn on a coarse grid and upsampled bicubically (cheap), so its cost barely depends on size.
    `coarse` = (cells, weight) adds a second, coarser octave before the single full-size resize.
    """
    def octave(n: int) -> np.ndarray:
        low = ndimage.gaussian_filter(r.standard_normal((n, n)).astype(np.float32), 0.7, mode="wrap")
        return (low - low.mean()) / (low.std() + 1e-6)

    n = max(4, int(cells))
    low = octave(n)
    if coarse is not None:
        c = octave(max(4, int(coarse[0])))
        low += np.float32(coarse[1]) * np.asarray(
            Image.fromarray(c, mode="F").resize((n, n), Image.BICUBIC))
    return np.asarray(Image.fromarray(low, mode="F").resize((size, size), Image.BICUBIC))


def _upsample(f: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize of a float32 field to size x size (pixel centres aligned, as in `_grid`)."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(f, dtype=np.float32), mode="F")
                      .resize((size, size), Image.BICUBIC))


def _clip(x: np.ndarray, lo: float, hi: float | None = None) -> np.ndarray:
    """np.clip without its overhead (a new array)."""
    t = np.maximum(x, np.float32(lo))
    if hi is not None:
        np.minimum(t, np.float32(hi), out=t)
    return t


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, smooth in between (float32 in, float32 out)."""
    t = _clip(x, 0.0, 1.0)
    s = t * t
    t *= np.float32(-2.0)
    t += np.float32(3.0)
    s *= t
    return s


def _side(ax: np.ndarray, pair: tuple) -> np.ndarray:
    """Per-pixel value of a (image-left, image-right) parameter pair."""
    return np.where(ax, np.float32(pair[1]), np.float32(pair[0]))


_LUT_STEPS = 1400   # LUT entries per unit of attenuation
_LUT_LEN = 4200     # attenuation 0 .. 3


@lru_cache(maxsize=256)
def _exposure_lut(expo: float, gamma: float, black: float, white: float) -> np.ndarray:
    """Attenuation -> brightness of one exposure (film-like curve, then gamma and levels).

    A lookup table: cheaper than exp + power per pixel, and exact to a fraction of a grey level.
    """
    d = np.arange(_LUT_LEN, dtype=np.float64) / _LUT_STEPS
    img = (1.0 - np.exp(-expo * d)) / (1.0 - math.exp(-expo * 1.45))
    img = np.clip(img, 0.0, 1.0) ** gamma
    return (255.0 * (black + (white - black) * img)).astype(np.float32)


def _rows(y: np.ndarray, lo: float, hi: float) -> slice:
    """Rows of the image whose anatomical heights reach into [lo, hi] (to draw small parts cheaply)."""
    ymin, ymax = y[:, 0], y[:, -1]
    lo_r, hi_r = np.minimum(ymin, ymax), np.maximum(ymin, ymax)
    hit = np.flatnonzero((hi_r >= lo) & (lo_r <= hi))
    return slice(int(hit[0]), int(hit[-1]) + 1) if hit.size else slice(0, 0)


def _edge_cols(x: np.ndarray, a_min: float) -> list[slice]:
    """Column blocks at the left and right edges whose |x| can exceed `a_min` in some row."""
    lo = np.minimum(x[0], x[-1])   # x is monotonic down each column (small rotations)
    hi = np.maximum(x[0], x[-1])
    left = np.flatnonzero(lo <= -a_min)
    right = np.flatnonzero(hi >= a_min)
    out = []
    if left.size:
        out.append(slice(0, int(left[-1]) + 1))
    if right.size:
        out.append(slice(int(right[0]), x.shape[1]))
    if len(out) == 2 and out[0].stop > out[1].start:  # tiny image: one block
        out = [slice(0, x.shape[1])]
    return out


@lru_cache(maxsize=16)
def _vessels(vessel_seed: int, size: int) -> np.ndarray:
    """Ridged random field: branching vessel-like lines, the same on every image of a patient."""
    rv = _rng(vessel_seed)
    ridge = 1.0 - np.abs(_smooth_noise(rv, size, 28, coarse=(14, 1 / 0.6))) * 0.48
    ridge = _clip(ridge, 0.0, 1.0)
    ridge = ridge * ridge * ridge
    ridge.flags.writeable = False
    return ridge


# 5x7 bitmap glyphs for the burnt-in marker.
_GLYPHS = {
    "R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
    "L": ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
}


def _marker_px(size: int) -> int:
    """Pixels per glyph cell of the marker: a tag about a fifth of the film's height (the size of
    a hospital's burnt-in label; smaller than one Grad-CAM cell at 64 px input it cannot be seen
    in a map, which is why notebook 05 trains its marker models at 128 px). At a sixth (size / 48)
    0.20-0.32 of the marker model's Grad-CAM energy fell on the box over the 12 runs of
    docs/lessons.md; at a fifth (and notebook 05's finding at difficulty 0.45 instead of 0.6)
    0.27-0.40. The map's cells are coarse beside the box, so its edges spill over, and the
    smaller box left too thin a margin above the lesson's bar of 0.20."""
    return max(1, round(size / 40))


def _marker_layout(seed: int, patient: int, image: int, size: int):
    """(rng, letter, top, left, height, width) of the burnt-in marker, drawn in a fixed order."""
    r = _rng(seed, patient, image, _T_MARKER)
    letter = "R" if r.random() < 0.5 else "L"
    px = _marker_px(size)
    pad = max(1, px)
    h, w = 7 * px + 2 * pad, 5 * px + 2 * pad
    margin = max(1, round(size * 0.03))
    jitter = max(1, round(size * 0.03))
    top = margin + int(r.integers(jitter))
    left_side = r.random() < 0.5
    off = margin + int(r.integers(jitter))
    left = off if left_side else size - off - w
    return r, letter, top, left, h, w


def marker_box(seed: int, patient: int, image: int, size: int = 256) -> tuple[int, int, int, int]:
    """(top, left, height, width) in pixels of the marker that `render_image(..., marker=True)`
    burns into this image at this size: the region a shortcut-learning CAM lights up."""
    size = _check_int("size", size, 32)
    return _marker_layout(_check_int("seed", seed, 0), _check_int("patient", patient, 0),
                          _check_int("image", image, 0), size)[2:]


def _draw_marker(img: np.ndarray, seed: int, patient: int, image: int) -> None:
    """Burn a radiographer-style tag (bright block with a dark R/L) into a top corner, in place."""
    size = img.shape[0]
    r, letter, top, left, h, w = _marker_layout(seed, patient, image, size)
    px = _marker_px(size)
    pad = max(1, px)
    glyph = np.array([[c == "1" for c in row] for row in _GLYPHS[letter]])
    block = np.full((h, w), int(r.integers(225, 256)), dtype=np.uint8)
    cells = np.kron(glyph, np.ones((px, px), dtype=bool))
    block[pad:pad + 7 * px, pad:pad + 5 * px][cells] = int(r.integers(10, 40))
    img[top:top + h, left:left + w] = block


def _lung_field(an: _Anatomy, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Signed distances (about, in anatomical units; > 0 inside) of the lung fields and parts.

    Returns (f_lung, f_ell, f_heart, f_dia): the lungs are each side's outer ellipse minus the
    mediastinum (with the aortic knob) and the heart, above the diaphragm dome.
    """
    right = x > 0
    a = np.abs(x)
    xe, ye = _side(right, an.lung_xe), _side(right, an.lung_ye)
    ae, be = _side(right, an.lung_ae), _side(right, an.lung_be)
    q = ((a - xe) / ae) ** 2 + ((y - ye) / be) ** 2
    f_ell = (1.0 - q) * np.float32(0.5 * min(an.lung_ae[0], an.lung_be[0]))
    f_med = a - np.float32(an.med_w) - 0.05 * _smoothstep((y + 0.1) / 0.45)
    r = _rows(y, -0.6, -0.06) if y.ndim == 2 else slice(None)
    yk = (y[r] + 0.33) / 0.08
    f_med[r] -= np.where(right[r], np.float32(an.knob) * np.exp(-yk * yk), np.float32(0))  # aortic knob
    # Heart: an egg (broader below), tilted with its apex down to the patient's left.
    reach = max(an.heart_a, an.heart_b) * 1.4
    r = _rows(y, an.heart_y - reach, an.heart_y + reach) if y.ndim == 2 else slice(None)
    f_heart = np.full_like(x, -1.0)
    ch, sh = math.cos(an.heart_rot), math.sin(an.heart_rot)
    hx, hy = x[r] - np.float32(an.heart_x), y[r] - np.float32(an.heart_y)
    hv = np.float32(-sh) * hx + np.float32(ch) * hy
    hu = (np.float32(ch) * hx + np.float32(sh) * hy) \
        * (1.0 - 0.25 * _clip(hv / np.float32(an.heart_b), -1, 1))
    qh = (hu / np.float32(an.heart_a)) ** 2 + (hv / np.float32(an.heart_b)) ** 2
    f_heart[r] = (1.0 - qh) * np.float32(0.5 * an.heart_b)
    dome = _side(right, an.dome_y) + _side(right, an.dome_k) * (a - _side(right, an.dome_x)) ** 2
    f_dia = dome - y
    f_lung = np.minimum(np.minimum(f_ell, f_med), np.minimum(-f_heart, f_dia))
    return f_lung, f_ell, f_heart, f_dia


def _inside_point(r: np.random.Generator, an: _Anatomy, right: bool, ys: tuple[float, float],
                  margin: float) -> tuple[float, float]:
    """A random (x, y) point at least `margin` inside one lung, in the band of heights `ys`.

    Rejection sampling on the analytic lung field, so a lesion centre is never behind the
    heart or below the diaphragm; falls back to the deepest candidate.
    """
    n = 64
    a = r.uniform(0.1, 0.8, n).astype(np.float32)
    yy = r.uniform(ys[0], ys[1], n).astype(np.float32)
    xx = a if right else -a
    f = _lung_field(an, xx, yy)[0]
    ok = np.flatnonzero(f > margin)
    k = int(ok[0]) if ok.size else int(np.argmax(f))
    return float(xx[k]), float(yy[k])



# --------------------------------------------------------------------------- lesions

def _lesion(label: str, subtype: str, seed: int, patient: int, image: int, difficulty: float,
            x: np.ndarray, y: np.ndarray, a: np.ndarray, right: np.ndarray, lung: np.ndarray,
            f_ell: np.ndarray, an: _Anatomy) -> np.ndarray:
    """Extra density of the finding (float32, 0 outside it), confined to the lungs.

    `a` is the lateral distance from the midline, `right` marks the image-right lung, `lung` is
    the soft lung field (0..1) and `f_ell` the distance inside the lung's outer ellipse.
    """
    if label == "normal":
        return np.zeros_like(x)
    size = x.shape[0]
    rp = _rng(seed, patient, _T_LESION)            # the disease of the patient: where, which side
    ri = _rng(seed, patient, image, _T_LESION_IMG)  # how it looks on this image (evolves a bit)
    amp = (1.25 - 0.9 * difficulty) * float(np.exp(0.12 * ri.standard_normal()))
    grow = (1.2 - 0.6 * difficulty) * float(np.exp(0.08 * ri.standard_normal()))
    patch = _smooth_noise(rp, size, 10)
    if label == "pneumonia" and subtype == "bacteria":
        # Focal / lobar consolidation in one lung: a dense irregular blob (about a fifth of the
        # lung), sometimes cut flat by a fissure (upper/middle lobe), homogeneous but for texture.
        side = bool(rp.random() < 0.5)
        zone = int(rp.choice(3, p=[0.25, 0.3, 0.45]))  # upper, middle, lower zone
        band = ((-0.5, -0.2), (-0.2, 0.1), (0.1, 0.4))[zone]
        cx, cy = _inside_point(rp, an, side, band, 0.08)
        ca = abs(cx)
        ra = 0.25 * grow * float(np.exp(0.15 * rp.standard_normal()))
        rb = 0.21 * grow * float(np.exp(0.15 * rp.standard_normal()))
        dy = (y - np.float32(cy)) / np.float32(rb)
        da = (a - np.float32(ca)) / np.float32(ra)
        e = 1.0 - (da * da + dy * dy) * np.exp(-0.6 * patch)  # irregular border, solid centre
        if zone < 2 and rp.random() < 0.5:  # lobar: flat lower border along a fissure
            e = np.minimum(e, (np.float32(cy + rb * 0.6) - y) / np.float32(0.04))
        sel = right if side else ~right
        d = np.where(sel, _smoothstep(e / 0.8), 0.0) * (0.85 + 0.15 * patch)
        return (0.40 * amp) * d * lung
    if label == "pneumonia":
        # Viral: diffuse bilateral perihilar / interstitial haziness with reticular texture.
        fine = _smooth_noise(rp, size, 28)
        hx = np.float32(0.18 + 0.03 * rp.standard_normal())
        hy = np.float32(0.02 + 0.05 * rp.standard_normal())
        s2 = np.float32((0.30 * grow) ** 2)
        w = 1.0 - ((a - hx) ** 2 + (y - hy) ** 2 * 0.6) / s2 + 0.25 * patch
        asym = np.where(right, np.float32(np.clip(1 + 0.25 * rp.standard_normal(), 0.4, 1.6)),
                        np.float32(1.0))
        d = _smoothstep(w / 0.7) * _clip(0.6 + 0.45 * fine, 0.0, 1.2) * asym
        return (0.33 * amp) * d * lung
    if label == "covid":
        # Bilateral, peripheral, lower-zone, patchy ground-glass opacities.
        per = _smoothstep(1.0 - f_ell / np.float32(0.24 * grow))      # near the outer lung edge
        low = _smoothstep((y + np.float32(0.3 * grow)) / 0.45)  # lower and middle zones
        spots = _smoothstep((patch + 0.3) / 1.0)
        asym = np.where(right, np.float32(np.clip(1 + 0.3 * rp.standard_normal(), 0.5, 1.4)),
                        np.float32(1.0))
        d = per * low * spots * asym
        return (0.50 * amp) * d * lung
    if label == "effusion":
        # Basal fluid with a meniscus: level rises toward the lateral chest wall (concave upper
        # border, blunted costophrenic angle); one side or both.
        u = rp.random()
        sides = (True, False) if u < 0.4 else ((False, True) if u < 0.8 else (True, True))
        depth = 0.22 * grow * float(np.exp(0.25 * rp.standard_normal()))
        out = np.zeros_like(x)
        for k, on in enumerate(sides):
            if not on:
                continue
            dx_, dk_ = an.dome_x[k], an.dome_k[k]
            dome_y_k = an.dome_y[k]
            y_lat = dome_y_k + dk_ * (0.75 - dx_) ** 2 - 1.5 * depth   # climbs the lateral wall
            y_med = dome_y_k + dk_ * (0.12 - dx_) ** 2 - 0.5 * depth  # thinner medially
            t = _clip((a - 0.12) / 0.63, 0.0, 1.0)
            surf = np.float32(y_med) - np.float32(y_med - y_lat) * t * t * t
            fl = _smoothstep((y - surf) / np.float32(0.04)) * (1.0 + 0.8 * _clip(y - surf, 0, 0.4))
            sel = right if k == 1 else ~right
            out += np.where(sel, fl, 0.0).astype(np.float32)
        return (0.40 * amp) * out * lung
    return np.zeros_like(x)


# --------------------------------------------------------------------------- the renderer

def _density(seed: int, patient: int, image: int, label: str, subtype: str, difficulty: float,
             n: int, view: str | None = None, likeness: float = 0.0,
             mimic: tuple[str, float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(attenuation, lesion attenuation, signed lung distance) on an n x n grid.

    Everything here is smooth, so `render_image` draws it at half resolution for large images
    and upsamples; fine noise and the marker are added at full resolution.
    """
    an = _anatomy(seed, patient, difficulty)
    po = _pose(seed, patient, image, difficulty, view, likeness)
    u, v = _grid(n)
    # Anatomical coordinates: undo this image's shift, rotation and magnification.
    c, s = math.cos(po.rot), math.sin(po.rot)
    k = 1.0 / po.scale
    uu, vv = u - np.float32(po.dx), v - np.float32(po.dy)
    x = (np.float32(c * k) * uu + np.float32(s * k) * vv)
    y = (np.float32(-s * k) * uu + np.float32(c * k) * vv)

    right = x > 0                       # image right = patient's left
    a = np.abs(x)                        # lateral distance from the midline

    # Body: the shoulders slope down from the neck; the arms hang beside the chest behind a
    # dark axillary gap; the humeral heads sit at the top corners; thicker in the middle.
    bw = np.float32(an.body_w)
    ts = _clip((a - np.float32(an.neck_w)) / (bw + 0.1 - np.float32(an.neck_w)), 0.0, 1.0)
    f_top = y - (np.float32(an.shoulder_y) + 0.22 * ts * ts)
    f_neck = np.float32(an.neck_w) - a
    body = _smoothstep(np.maximum(f_top, f_neck) / 0.05 + 0.5)
    torso = np.ones_like(x)
    humerus = np.zeros_like(x)
    for cols in _edge_cols(x, an.body_w - 0.12):  # arms, armpits, chest-wall edge: sides only
        ac, yc = a[:, cols], y[:, cols]
        below = _clip(yc - np.float32(an.shoulder_y + 0.3), 0.0, 2.0)
        gap = 0.012 + 0.035 * below          # the armpit gap widens downward
        axilla = _smoothstep((gap - np.abs(ac - bw - gap - 0.005)) / 0.02) * _smoothstep(below / 0.15)
        body[:, cols] *= 1.0 - axilla
        torso[:, cols] = _smoothstep((bw - ac) / 0.04 + 0.5)
        hum = ((ac - bw - 0.05) / 0.11) ** 2 + ((yc - np.float32(an.shoulder_y) - 0.16) / 0.12) ** 2
        shaft = _smoothstep(1.0 - ((ac - bw - 0.12) / 0.05) ** 2) * (yc > np.float32(an.shoulder_y + 0.2))
        humerus[:, cols] = np.maximum(_smoothstep((1.0 - hum) / 0.3), shaft) * body[:, cols]
    thick = body * (0.5 + 0.5 * torso * np.sqrt(_clip(1.0 - (a / bw) ** 2, 0, 1)))

    # Lungs: outer ellipse, minus mediastinum and heart, above the diaphragm domes.
    f_lung, f_ell, f_heart, f_dia = _lung_field(an, x, y)
    lung = _smoothstep(f_lung / np.float32(0.018) + 0.5)  # soft-edged lung fields, 0..1

    # Density (bright = attenuating): soft tissue, minus lung air, plus bones and organs.
    d = thick + 0.3 * humerus
    abdomen = _smoothstep(-f_dia / 0.06) * body
    d += 0.12 * abdomen
    d += 0.04 * _smoothstep(f_heart / 0.05)
    air = np.float32(an.air) * (0.85 + 0.15 * _smoothstep(f_lung / 0.12))
    d -= air * lung
    # Trachea: air column above the carina.
    r = _rows(y, -2.0, -0.24)
    tr = _smoothstep(1.0 - (x[r] / 0.035) ** 2) * _smoothstep((-0.32 - y[r]) / 0.08)
    d[r] -= 0.22 * tr * body[r]
    # Gastric bubble under the left (image right) dome.
    if an.bubble > 0:
        yb = an.dome_y[1] + 0.14
        r = _rows(y, yb - 0.07, yb + 0.07)
        gb = ((x[r] - np.float32(an.dome_x[1] - 0.02)) / 0.11) ** 2 + ((y[r] - np.float32(yb)) / 0.06) ** 2
        d[r] -= np.float32(an.bubble) * _smoothstep(1.0 - gb) * abdomen[r]
    # Spine with vertebral segments (seen through the mediastinum and below the domes).
    sp = _smoothstep(1.0 - (x / np.float32(an.spine_w)) ** 2 * 0.9)
    seg = 0.75 + 0.25 * np.cos((y + np.float32(an.rib_top)) * np.float32(2 * math.pi / 0.105))
    d += 0.22 * sp * seg * body
    # Ribs: posterior arcs (highest mid-laterally, spacing growing downward) and fainter
    # anterior ribs descending medially; only within the thoracic cage.
    cage = _smoothstep((f_ell + 0.07) / 0.05) * _smoothstep((f_dia + 0.12) / 0.06)
    yp = y - np.float32(an.rib_curv) * (a - np.float32(an.rib_peak)) ** 2 - np.float32(an.rib_top)
    z = _clip(yp, 0.0, None) * np.float32(1 / 1.15)
    ph = np.float32(an.rib_n) * z * (1.18 - 0.18 * z)  # about z**0.85: spacing grows downward
    cr = 0.5 + 0.5 * np.cos(ph * np.float32(2 * math.pi))
    cr2 = cr * cr
    rib = cr2 * cr2 * (1.0 - 0.6 * cr2 * cr2)  # bright cortex, softer centre
    ya = y + 0.55 * a
    ca = 0.5 + 0.5 * np.cos((ya + 0.3) * np.float32(2 * math.pi / 0.21))
    ca2 = ca * ca
    arib = ca2 * ca2 * _smoothstep((a - 0.22) / 0.2)
    d += (0.16 * rib + 0.035 * arib) * cage * _smoothstep((a - 0.05) / 0.06)
    # Clavicles: S-shaped bars from the sternal notch to the shoulders.
    r = _rows(y, an.clav_y - an.clav_slope - 0.1, an.clav_y + 0.15)
    ar, yr = a[r], y[r]
    ycl = np.float32(an.clav_y) - np.float32(an.clav_slope) * ar + 0.18 * (ar - 0.3) ** 2 \
        - 0.015 * np.sin(ar * np.float32(2 * math.pi / 0.6))
    cl = _smoothstep(1.0 - ((yr - ycl) / 0.032) ** 2) * _smoothstep((ar - 0.06) / 0.04) \
        * _smoothstep((0.8 - ar) / 0.1)
    d[r] += 0.30 * cl * body[r]
    # Breast shadows (female patients): soft lower-lateral density with a sharp lower edge.
    if an.breast > 0:
        r = _rows(y, 0.07, 0.69)
        bq = ((a[r] - 0.45) / 0.32) ** 2 + ((y[r] - 0.38) / 0.3) ** 2
        d[r] += np.float32(an.breast) * _smoothstep((1.0 - bq) / 0.25) * body[r]

    # Lung markings: a ridged random field gives branching vessel-like lines, strongest near
    # the hila and fading toward the periphery (patient-specific: the same on every image).
    ridge = _vessels(an.vessel_seed, n)
    dxh, dyh = a - np.float32(0.2), y + np.float32(0.02)
    rad2 = dxh * dxh + dyh * dyh
    d += (0.16 * ridge * np.exp(-rad2 / 0.15) + 0.16 * np.exp(-rad2 / 0.012)) * lung

    # Mottled soft texture (patient + image) to avoid a synthetic look.
    rn = _rng(seed, patient, image, _T_NOISE)
    d += 0.035 * _smooth_noise(rn, n, 40, coarse=(12, 0.03 / 0.035)) * body

    # The finding (or, on a mimic's normal film, its look-alike: density, no label).
    if mimic is not None:
        d += _lesion(mimic[0], subtype, seed, patient, image, mimic[1], x, y, a, right, lung, f_ell, an)
    lab = _lesion(label, subtype, seed, patient, image, difficulty, x, y, a, right, lung, f_ell, an)
    d += lab
    return d, lab, f_lung


def render_image(seed: int, patient: int, image: int, label: str, *, size: int = 256,
                 difficulty: float = 0.5, marker: bool = False,
                 subtype: str | None = None,
                 view: str | None = None, likeness: float = 0.0,
                 mimic: tuple[str, float] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, lung_mask, lesion_mask) uint8 HxW for one image of one patient.

    A pure function of its arguments, so a notebook can re-render the same image with another
    label or with/without the marker (counterfactuals for the shortcut lesson): anatomy, pose,
    exposure and noise depend only on (seed, patient, image), never on label or marker.
    Masks are 0/255; the lesion mask is empty for ``normal``. `subtype` (pneumonia only:
    ``bacteria`` or ``virus``) defaults to the patient's own draw, as `generate` uses; `view`
    (one of `VIEWS`: AP films are magnified) defaults to the image's own draw, so a writer can
    give each class the view mix of a real source. `likeness` (0..1): how much of the film's
    pose and exposure is the patient's own, shared by all their films (see `_pose`). `mimic`
    ``(finding, difficulty)``: a normal film shows a faint look-alike of `finding` drawn at that
    difficulty (its noise and anatomy keep `difficulty`); its label and empty lesion mask stay
    normal (see `cxrnb.synthetic.write.patient_mimic`).
    """
    seed = _check_int("seed", seed, 0)
    patient = _check_int("patient", patient, 0)
    image = _check_int("image", image, 0)
    _check_label("label", label)
    size = _check_int("size", size, 32)
    difficulty = _check_unit("difficulty", difficulty)
    likeness = _check_unit("likeness", likeness)
    if subtype is None:
        subtype = _patient_meta(seed, patient)[2]
    elif subtype not in SUBTYPES:
        raise ValueError(f"subtype must be one of {list(SUBTYPES)} or None, got {subtype!r}")
    if view is not None and view not in VIEWS:
        raise ValueError(f"view must be one of {list(VIEWS)} or None, got {view!r}")
    if mimic is not None:
        if len(mimic) != 2 or mimic[0] == "normal":
            raise ValueError(f"mimic must be (finding, difficulty) with a finding other than normal, got {mimic!r}")
        _check_label("mimic", mimic[0])
        mimic = (mimic[0], _check_unit("mimic difficulty", mimic[1])) if label == "normal" else None

    work = size if size < 128 else (size + 1) // 2
    d, lab, f_lung = _density(seed, patient, image, label, subtype, difficulty, work, view, likeness, mimic)
    if work != size:
        d, lab, f_lung = (_upsample(f, size) for f in (d, lab, f_lung))
    lung_mask = f_lung > 0
    po = _pose(seed, patient, image, difficulty, view, likeness)
    rn = _rng(seed, patient, image, _T_NOISE, 1)

    # Exposure: attenuation -> brightness (film curve, gamma, levels), then quantum noise.
    img = _exposure_lut(po.expo, po.gamma, po.black, po.white)[
        _clip(d * np.float32(_LUT_STEPS), 0, _LUT_LEN - 1).astype(np.int32)]
    sigma = 255.0 * (0.012 + 0.035 * difficulty)
    img += np.float32(sigma) * rn.standard_normal((size, size), dtype=np.float32)
    img += np.float32(0.5)
    out = _clip(img, 0, 255).astype(np.uint8)

    if label == "normal":
        lesion_mask = np.zeros((size, size), dtype=np.uint8)
    else:
        peak = float(lab.max())
        les = (lab > 0.25 * peak) & lung_mask if peak > 0 else np.zeros_like(lung_mask)
        lesion_mask = les.astype(np.uint8) * 255
    if marker:
        _draw_marker(out, seed, patient, image)
    return out, lung_mask.astype(np.uint8) * 255, lesion_mask
