"""Solutions to the exercises of notebook 04 (Grad-CAM), run by tests/test_exercises.py.

They use synthetic films rendered in memory and an untrained `compact` model at 48 px: the
exercises are about what the maps and their scores *are*, which does not need a trained model."""
from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from cxrnb import explain
from cxrnb.models import build_model
from cxrnb.synthetic import render_image

SIZE = 48


def _films(n: int, size: int, label: str = "pneumonia") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float films (n, size, size, 1) in [0, 1], lung masks, lesion masks) of n patients."""
    img, lung, les = zip(*(render_image(0, p, 0, label, size=size, difficulty=0.3) for p in range(1, n + 1)))
    return np.stack(img)[..., None].astype("float32") / 255.0, np.stack(lung), np.stack(les)


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_model("compact", input_size=SIZE, num_classes=2)


def exercise_1(workdir: Path) -> dict:
    """A random map spreads its energy evenly *on average*, so the mean share it puts on the lesion
    (or the lungs) is the masks' mean share of the film's area: a map is informative only above
    that. The maps are smooth (coarse noise upsampled, like a CAM), so one film's share wanders
    around its area share; averaged over many maps it settles on it."""
    _, lungs, lesions = _films(12, 64)
    maps = np.concatenate([explain.random_maps(lesions.shape, seed=s) for s in range(20)])
    out = {}
    for name, masks in (("lesion", lesions), ("lung", lungs)):
        masks = np.tile(masks, (20, 1, 1))
        energy, area = explain.energy_share(maps, masks), (masks > 0).mean(axis=(1, 2))
        assert abs(np.nanmean(energy) - area.mean()) < 0.1 * area.mean() + 0.005, name
        out[f"{name}: area share"], out[f"{name}: random-map energy share"] = float(area.mean()), float(energy.mean())
    return out


def exercise_2(workdir: Path) -> dict:
    """The compact model ends in global average pooling + Dense, so the gradient of a class score
    with respect to the last activations is the same at every position (w_k / cells). Grad-CAM++'s
    normalised alphas are then uniform and its channel weights are relu(w_k): the same map as
    LayerCAM. Grad-CAM keeps the negative weights too, so it differs."""
    x, _, _ = _films(4, SIZE)
    maps = explain.cams(_model(), x, [1, 1, 1, 1], methods=explain.COMPILED)
    same = float(np.abs(maps["gradcam++"] - maps["layercam"]).max())
    other = float(np.abs(maps["gradcam"] - maps["layercam"]).max())
    assert same < 1e-4
    assert other > 0.1
    return {"max |Grad-CAM++ - LayerCAM|": same, "max |Grad-CAM - LayerCAM|": other}


def exercise_3(workdir: Path) -> dict:
    """The film's own edge map ignores the model: after every layer is randomised its maps are
    unchanged (rank correlation 1, FAIL). Grad-CAM depends on the weights and changes (PASS)."""
    x, _, _ = _films(4, SIZE)
    _, verdict = explain.randomisation_check(_model(), x, [1, 1, 1, 1], ("gradcam", explain.EDGES), seed=0)
    rho = verdict["spearman_all_random"]
    assert np.isclose(rho[explain.EDGES], 1.0) and not verdict.loc[explain.EDGES, "passes"]
    assert verdict.loc["gradcam", "passes"]
    return {f"{m}: rank correlation, all layers random": float(r) for m, r in rho.items()}
