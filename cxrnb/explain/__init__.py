"""Class activation maps that never go blank, scored against masks, for faithfulness and sanity.

Built the way tf-keras-vis is, one module per idea:

* `model`: the logit (scores are taken before softmax/sigmoid, so maps never go blank), the one
  rule for the spatial layer (`find_spatial_layer`: skip pooling, refuse 1 x 1 maps), `Explainer`.
* `methods`: one class per CAM method in one registry (`REGISTRY`, `register`); Grad-CAM,
  Grad-CAM++ and LayerCAM differ only in their weights and share a compiled, batched gradient
  pass; Score-CAM and SmoothGrad run through tf-keras-vis. `cam` and `cams` are the entry points.
* `scores`: energy inside a mask, pointing game, smooth random maps, `localisation`.
* `faithfulness`: deletion and insertion curves against smooth random maps.
* `sanity`: cascading randomisation and the shuffled-label model (Adebayo et al. 2018), with an
  edge-map control; a constant map has no rank correlation: "undefined", never a pass.
* `oracle`: tf-keras-vis' own Grad-CAM family, which the compiled path is tested against.
"""
from __future__ import annotations

from .faithfulness import (Curves, deletion_insertion, faithfulness, faithfulness_gaps, faithfulness_table,
                           reference_images)
from .methods import (REGISTRY, GradCAM, GradCAMPlusPlus, GradientCAM, LayerCAM, Method, ScoreCAM, SmoothGrad,
                      ToolkitMethod, cam, cams, compiled_maps, names, register)
from .model import Explainer, _expand, explainer, find_spatial_layer, layer_output
from .sanity import (EDGES, MapFn, copy_model, data_randomisation_check, edge_map, randomisation_check,
                     rank_correlation)
from .scores import (POINTING_TOLERANCE, energy_share, localisation, peak_distance, pointing_game, pointing_radius,
                     random_maps)

#: Every registered method, in display order (as of import; `names()` after a `register`).
METHODS = names()
#: The methods on the compiled gradient path.
COMPILED = names(compiled=True)

__all__ = [
    "METHODS", "COMPILED", "EDGES", "REGISTRY", "Method", "GradientCAM", "GradCAM", "GradCAMPlusPlus",
    "LayerCAM", "ToolkitMethod", "ScoreCAM", "SmoothGrad", "register", "names", "cam", "cams", "compiled_maps",
    "Explainer", "explainer", "find_spatial_layer", "layer_output", "_expand",
    "POINTING_TOLERANCE", "energy_share", "peak_distance", "pointing_game", "pointing_radius", "random_maps",
    "localisation",
    "Curves", "reference_images", "deletion_insertion", "faithfulness", "faithfulness_table", "faithfulness_gaps",
    "MapFn", "copy_model", "edge_map", "rank_correlation", "randomisation_check", "data_randomisation_check",
]
