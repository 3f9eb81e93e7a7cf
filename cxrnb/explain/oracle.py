"""tf-keras-vis' Grad-CAM, Grad-CAM++ and LayerCAM on cxrnb's terms: the oracle that the compiled
path (`cxrnb.explain.methods`) is tested against, and the baseline `benchmarks/cam.py` times it
against. Not used at run time: the compiled path is the one implementation of these methods.

The same layer (`find_spatial_layer`, via `toolkit_layer`), the same score (the logit, so maps
never go blank after a saturated softmax) and the same upsampling (`_expand`): the maps must
agree to float precision.
"""
from __future__ import annotations

import warnings

import keras
import numpy as np

from .methods import toolkit_layer
from .model import Explainer, _expand, explainer


def toolkit_cam(model: keras.Model | Explainer, images, class_index, method: str = "gradcam",
                layer: str | keras.layers.Layer | None = None, *, batch_size: int = 64) -> np.ndarray:
    """(B, H, W) maps in [0, 1] of "gradcam", "gradcam++" or "layercam" computed by tf-keras-vis."""
    with warnings.catch_warnings():  # tf-keras-vis imports a deprecated scipy namespace
        warnings.simplefilter("ignore", DeprecationWarning)
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.layercam import Layercam
    classes = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus, "layercam": Layercam}
    if method not in classes:
        raise ValueError(f"tf-keras-vis oracle for {method!r}: choose from {list(classes)}")
    ex = explainer(model, layer)
    x = ex.check_images(images)
    idx = ex.check_classes(class_index, len(x))
    out = [_expand(np.asarray(classes[method](ex.logit_model)(
               lambda z, ib=idx[i:i + batch_size]: ex.score(z, ib), x[i:i + batch_size], **toolkit_layer(ex),
               expand_cam=False, normalize_cam=False)), x.shape[1:3])
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, *x.shape[1:3]), np.float32)
