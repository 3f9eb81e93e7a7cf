"""Solutions to the exercises of notebook 02 (augmentation preview), run by tests/test_exercises.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cxrnb.augment import AugmentPolicy, opencv_augmenter
from cxrnb.lessons.augmentation import apply_params, normalise
from cxrnb.synthetic import render_image


def _films(n: int = 16, size: int = 96) -> np.ndarray:
    return np.stack([render_image(0, p, 0, "normal", size=size)[0] for p in range(1, n + 1)])[..., None].astype("float32")


def exercise_1(workdir: Path) -> dict:
    """rotation=45 leaves a far larger black border than the default ±10° (more than 5 points)."""
    films = _films()
    black = {}
    for rotation in (10, 45):
        out = np.asarray(opencv_augmenter(AugmentPolicy(rotation=rotation), seed=0)(films))
        black[rotation] = float((out <= 0).mean())
    assert black[45] - black[10] > 0.05
    return {f"black share at ±{r}°": v for r, v in black.items()}


def exercise_2(workdir: Path) -> dict:
    """A film at brightness ×0.6 differs after /255 but is the same film after per-image min-max."""
    film = _films(1)[0]
    dark = film * 0.6
    pair = np.stack([film, dark])
    diff = {how: float(np.abs(np.diff(normalise(pair, how), axis=0)).max()) for how in ("/255", "min-max per image")}
    assert diff["/255"] > 0.1
    assert diff["min-max per image"] < 0.01
    return diff


def exercise_3(workdir: Path) -> dict:
    """The heart (brighter mediastinum left of the spine on the patient, image right) moves to the
    image left after a horizontal flip."""
    img, lung, _ = render_image(0, 1, 0, "normal", size=128)
    def heart_side(x: np.ndarray) -> str:
        lower = x[64:110, :, 0] if x.ndim == 3 else x[64:110]
        return "right" if lower[:, 64:].mean() > lower[:, :64].mean() else "left"
    before, after = heart_side(img.astype("float32")), heart_side(apply_params(img, hflip=True))
    assert (before, after) == ("right", "left")
    return {"heart before": before, "heart after flip": after}
