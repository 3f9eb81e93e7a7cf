"""Where a map puts its energy: share inside a mask, the pointing game, smooth random maps
(the baseline) and `localisation`, the table of both with patient-bootstrap intervals.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..evaluate import _percentiles
from .model import _expand


# ---------------------------------------------------------------------------------------------
# Localisation against masks
# ---------------------------------------------------------------------------------------------

def _masks(masks, maps: np.ndarray, what: str) -> np.ndarray:
    m = np.asarray(masks)
    if m.ndim == 4 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.shape != maps.shape:
        raise ValueError(f"{what} masks have shape {m.shape} but the maps are {maps.shape}: "
                         f"resize the masks to the model input size")
    return m > 0


def energy_share(maps, masks) -> np.ndarray:
    """Per image, the share of the map's total (non-negative) energy that falls inside the mask."""
    maps = np.asarray(maps, np.float64)
    inside = _masks(masks, maps, "")
    total = maps.sum(axis=(1, 2))
    return np.where(total > 0, (maps * inside).sum(axis=(1, 2)) / np.maximum(total, 1e-300), np.nan)


#: The pointing game's tolerance as published (Zhang et al. 2016, "Top-down neural attention by
#: excitation backprop"): 15 pixels on their ~224-pixel inputs, here as a share of the film's side.
POINTING_TOLERANCE = 15 / 224


def pointing_radius(shape: tuple[int, ...], tolerance: float = POINTING_TOLERANCE) -> float:
    """The pointing game's tolerance in pixels for maps of `shape` ((B, H, W) or (H, W)): `tolerance`
    x the longer side."""
    return tolerance * max(shape[-2:])


def peak_distance(maps, masks) -> np.ndarray:
    """Per image, the distance in pixels from the map's peak (first maximum in row-major order) to
    the nearest mask pixel: 0 on the mask, inf for an empty mask."""
    maps = np.asarray(maps)
    inside = _masks(masks, maps, "")
    n, w = len(maps), maps.shape[-1]
    py, px = np.divmod(maps.reshape(n, -1).argmax(axis=1), w) if n else (np.zeros(0, int),) * 2
    out = np.full(n, np.inf)
    for i in range(n):
        ys, xs = np.nonzero(inside[i])
        if ys.size:
            out[i] = float(np.sqrt(((ys - py[i]) ** 2 + (xs - px[i]) ** 2).min()))
    return out


def pointing_game(maps, masks, *, tolerance: float = POINTING_TOLERANCE) -> np.ndarray:
    """Per image, whether the map's peak lies on the mask or within `pointing_radius` of it
    (`tolerance` x the film's longer side; 0: strictly inside).

    Why a tolerance: a CAM is a coarse grid upsampled, so its peak sits at the centre of its
    brightest cell; a cell that covers a lesion's edge peaks a few pixels beside it. Zhang et al.
    count such a peak as a hit with 15 px at 224 px (4 px at 64 px, less than a Grad-CAM cell of
    `compact` there); a smooth random map still rarely lands that close (`localisation`'s row).
    """
    maps = np.asarray(maps)
    return peak_distance(maps, masks) <= pointing_radius(maps.shape, tolerance)


def random_maps(shape: tuple[int, int, int], seed: int = 0, *, cells: int | tuple[int, int] = 8
                ) -> np.ndarray:
    """Smooth random maps (B, H, W) in [0, 1]: the baseline an explanation must beat.

    Uniform noise on a grid of `cells` (an int for a square grid, or (rows, columns)) is upsampled
    bilinearly to the film and scaled to [0, 1], as a CAM is from its layer's grid. Deleting or
    inserting such blobs leaves a plausible film, where i.i.d. pixel noise gives a speckled one
    unlike any training film. `cells` = (H, W) gives that i.i.d. pixel noise (each cell a pixel).
    The expected share of a random map's energy on a mask is about the mask's area share.
    """
    n, h, w = shape
    gh, gw = (cells, cells) if np.ndim(cells) == 0 else cells
    if not (1 <= gh <= h and 1 <= gw <= w) or gh * gw < 2:
        raise ValueError(f"cells must be a grid of 2 to {h}x{w} cells, got {cells!r}")
    return _expand(np.random.default_rng(seed).random((n, gh, gw), dtype=np.float32), (h, w))


def _film_boot(values: Mapping[str, np.ndarray], groups, n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """Bootstrap resamples (n_boot,) of the mean of each per-film array in `values` (NaN films left
    out), drawing whole `groups` (patients; None: each film alone) with replacement. The same
    groups and seed draw the same resamples, so the rows of a table are paired."""
    n = len(next(iter(values.values())))
    codes = np.arange(n) if groups is None else pd.factorize(np.asarray(groups))[0]
    k = int(codes.max()) + 1 if n else 0
    if k == 0:
        return {name: np.full(n_boot, np.nan) for name in values}
    draws = np.random.default_rng(seed).integers(0, k, (n_boot, k)) + k * np.arange(n_boot)[:, None]
    counts = np.bincount(draws.ravel(), minlength=n_boot * k).reshape(n_boot, k).astype(float)
    out = {}
    for name, v in values.items():
        ok = np.isfinite(v)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = (counts @ np.bincount(codes[ok], weights=v[ok], minlength=k)) / (
                counts @ np.bincount(codes[ok], minlength=k))
    return out


def localisation(maps: Mapping[str, np.ndarray], lung_masks=None, lesion_masks=None, *,
                 n_random: int = 20, seed: int = 0, cells: int | tuple[int, int] = 8, groups=None,
                 n_boot: int = 1000, ci: float = 0.95) -> pd.DataFrame:
    """Localisation table, one row per method plus ``random map``: mean share of CAM energy inside
    the lungs (``lung_energy``) and inside the lesion (``lesion_energy``), the lesion's share of the
    film's area (``lesion_area``), their ratio (``lesion_energy_ratio``: 1 for a map that ignores
    the lesion, 3 for one that puts three times the lesion's area share on it) and the pointing-game
    hit rate (peak on the lesion or within `pointing_game`'s published tolerance, 4 px at 64 px)
    beside ``pointing_strict`` (peak strictly inside, shown for comparison).

    The maps must be those of the *finding* class (e.g. ``explain.cams(model, x, finding_index)``
    with the true class of each film with a lesion), not of the predicted class: on a film the
    model gets wrong the predicted class's map need not look at the finding at all.
    Lesion columns average over images with a non-empty lesion mask only (``n_lesion``); a constant
    (e.g. all-zero) map has no energy share and no peak, so it is left out of them. The random
    row averages `n_random` smooth random maps per image (`random_maps` with `cells`), measured
    like the methods (its expectation is about the mask's area share: a ratio of about 1).
    With `n_boot` > 0 every score gets ``_low`` / ``_high`` columns: the `ci` bootstrap percentile
    interval over films, or over patients when `groups` gives each film's patient.
    """
    if not maps:
        raise ValueError("maps is empty: give {method: (B, H, W) maps}")
    first = np.asarray(next(iter(maps.values())))
    lung = None if lung_masks is None else _masks(lung_masks, first, "lung")
    lesion = None if lesion_masks is None else _masks(lesion_masks, first, "lesion")
    has = lesion.any(axis=(1, 2)) if lesion is not None else np.zeros(len(first), bool)
    groups = None if groups is None else np.asarray(groups)
    if groups is not None and groups.shape != (len(first),):
        raise ValueError(f"groups must give one patient per film ({len(first)}), got shape {groups.shape}")
    rand = [random_maps(first.shape, seed + r, cells=cells) for r in range(n_random)]
    parts = [("lung", np.ones(len(first), bool), lung), ("lesion", has, lesion)]

    def row(ms: list[np.ndarray]) -> dict:
        """Scores of maps `ms` (draws of one kind, averaged per film) with their intervals."""
        r: dict = {}
        for what, films, mask in parts:
            if mask is None:
                continue
            mk, ms_ = mask[films], [m[films] for m in ms]
            with warnings.catch_warnings():  # a map with no energy has no share: NaN, left out
                warnings.simplefilter("ignore", RuntimeWarning)
                per_film = {f"{what}_energy": np.nanmean([energy_share(m, mk) for m in ms_], 0)}
                if what == "lesion":
                    per_film["lesion_area"] = mk.mean(axis=(1, 2))
                    dist = [np.where(np.ptp(m, axis=(1, 2)) > 0, peak_distance(m, mk), np.nan) for m in ms_]
                    for col, tol in (("pointing_game", POINTING_TOLERANCE), ("pointing_strict", 0.0)):
                        radius = pointing_radius(mk.shape, tol)
                        per_film[col] = np.nanmean([np.where(np.isnan(d), np.nan, d <= radius) for d in dist], 0)
                est = {k: float(np.nanmean(v)) for k, v in per_film.items()}
            boot = _film_boot(per_film, None if groups is None else groups[films], n_boot, seed)
            if what == "lesion":
                est["lesion_energy_ratio"] = est["lesion_energy"] / est["lesion_area"]
                boot["lesion_energy_ratio"] = boot["lesion_energy"] / boot.pop("lesion_area")
            for k, v in est.items():
                r[k] = v
                if k in boot:
                    r[f"{k}_low"], r[f"{k}_high"] = _percentiles(boot[k], ci)
        return r

    rows = {}
    for name, m in maps.items():
        m = np.asarray(m)
        if m.shape != first.shape:
            raise ValueError(f"maps of {name!r} have shape {m.shape}, the first method's {first.shape}")
        rows[name] = row([m])
    rows["random map"] = row(rand)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    table["n_images"] = len(first)
    table["n_lesion"] = int(has.sum())
    return table
