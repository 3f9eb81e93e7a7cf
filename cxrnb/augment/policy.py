"""The augmentation policy: what may vary on a chest radiograph, validated, with named presets.

Why each parameter is bounded (`describe` gives the table a notebook shows):

* rotation <= 45 degrees: patients are positioned upright; real films are tilted 0-20 degrees at
  most (article 002 shows 15-20 degree examples; article 003 says more than 20 degrees "is very
  unlikely").
* zoom <= 50 %, shift <= 30 %, crop <= 25 % per side: beyond that the lungs leave the field.
* brightness factors in (0, 3], gamma in (0, 5]: exposure and detector response vary, but a factor
  of 0 erases the image.
* horizontal flip is **off by default**: a chest film is not left-right symmetric. The heart lies
  on the patient's left, the aortic knob and gastric bubble too, and the film carries burnt-in
  L/R markers. A flipped film looks like *dextrocardia* (situs inversus), a real finding, with a
  marker that now lies about the side: the model learns that anatomy may be mirrored and that the
  side of a finding means nothing. Turn it on only knowingly.
* vertical flip is **refused**: patients are never upside down on a chest X-ray (article 003: "if
  you really have one, you may ask what that guy drank").

The "article 00x" ids are the reference articles listed in the README.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np

__all__ = ["AugmentPolicy", "PRESETS", "PRESET_SOURCES", "BOUNDS", "VALUE_RANGE", "as_policy", "describe"]

VALUE_RANGE = (0.0, 255.0)

# field -> (low, high, text of the allowed range). Pairs (brightness, gamma) apply to both ends.
BOUNDS: dict[str, tuple[float, float, str]] = {
    "rotation": (0.0, 45.0, "0 <= rotation <= 45 (degrees, drawn in [-rotation, +rotation])"),
    "zoom": (0.0, 0.5, "0 <= zoom <= 0.5 (fraction: zoom in/out by up to this)"),
    "shift": (0.0, 0.3, "0 <= shift <= 0.3 (fraction of height/width)"),
    "brightness": (0.0, 3.0, "a pair (low, high) with 0 < low <= high <= 3 (multiplicative factors)"),
    "gamma": (0.0, 5.0, "a pair (low, high) with 0 < low <= high <= 5 (gamma exponents)"),
    "crop": (0.0, 0.25, "0 <= crop <= 0.25 (fraction removed per side, then resized back; "
                        "1.0 would remove the whole image)"),
}

_VFLIP_MESSAGE = (
    "vertical_flip=True is refused: patients are never upside down on a chest X-ray, so a "
    "vertically flipped film teaches the model anatomy that does not exist (lungs below the "
    "diaphragm). Use rotation (<= 45 degrees) for positioning variation instead.")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number ({BOUNDS[name][2]}), got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite ({BOUNDS[name][2]}), got {value!r}")
    return v


def _check_scalar(name: str, value: Any) -> float:
    v = _number(name, value)
    lo, hi, text = BOUNDS[name]
    if not lo <= v <= hi:
        raise ValueError(f"{name}={value!r} is out of range: allowed {text}")
    return v


def _check_pair(name: str, value: Any) -> tuple[float, float]:
    text = BOUNDS[name][2]
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{name} must be {text}, got {value!r}")
    low, high = (_number(name, v) for v in value)
    if not (0.0 < low <= high <= BOUNDS[name][1]):
        raise ValueError(f"{name}={tuple(value)!r} is out of range: allowed {text}")
    return (low, high)


@dataclass(frozen=True)
class AugmentPolicy:
    """What may vary when a chest radiograph is augmented. Immutable, validated, JSON-serialisable.

    The defaults (``AugmentPolicy()`` == ``AugmentPolicy.preset("default")``) are mild: what one
    sees between two films of the same patient on different days.

    rotation: max degrees, drawn uniformly in [-rotation, +rotation] (0..45).
    zoom: max fraction; the scale is drawn in [1 - zoom, 1 + zoom] (0..0.5).
    shift: max translation as a fraction of height/width (0..0.3). Off by default: films are
        centred on the chest (article 003 sets width/height_shift_range to 0).
    brightness: multiplicative exposure factor range (low, high), both > 0; (1, 1) is off.
    gamma: gamma-contrast exponent range (low, high), both > 0, applied as
        255 * (x / 255) ** gamma; (1, 1) is off. <1 brightens soft tissue, >1 darkens it.
    crop: max fraction removed from each side independently before resizing back (0..0.25).
    horizontal_flip: off by default. A chest film is not left-right symmetric: the heart is on
        the patient's left, and a mirrored film looks like dextrocardia (a real finding) with a
        burnt-in L/R marker now on the wrong side. Enable only knowingly.
    vertical_flip: must stay False; True raises ValueError (nobody is X-rayed upside down).
    """

    rotation: float = 10.0
    zoom: float = 0.1
    shift: float = 0.0
    brightness: tuple[float, float] = (0.9, 1.1)
    gamma: tuple[float, float] = (0.8, 1.25)
    crop: float = 0.05
    horizontal_flip: bool = False
    vertical_flip: bool = False

    def __post_init__(self) -> None:
        for name in ("rotation", "zoom", "shift", "crop"):
            object.__setattr__(self, name, _check_scalar(name, getattr(self, name)))
        for name in ("brightness", "gamma"):
            object.__setattr__(self, name, _check_pair(name, getattr(self, name)))
        for name in ("horizontal_flip", "vertical_flip"):
            v = getattr(self, name)
            if not isinstance(v, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {v!r}")
            object.__setattr__(self, name, bool(v))
        if self.vertical_flip:
            raise ValueError(_VFLIP_MESSAGE)

    # -- derived -----------------------------------------------------------------------------
    @property
    def geometric(self) -> bool:
        """True when the policy moves pixels (masks must follow)."""
        return bool(self.rotation or self.zoom or self.shift or self.crop or self.horizontal_flip)

    @property
    def intensity(self) -> bool:
        """True when the policy changes pixel values (masks are left alone)."""
        return self.brightness != (1.0, 1.0) or self.gamma != (1.0, 1.0)

    @property
    def is_identity(self) -> bool:
        """True when every executor returns its input unchanged."""
        return not (self.geometric or self.intensity)

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("brightness", "gamma"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AugmentPolicy":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown AugmentPolicy field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**dict(d))

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> "AugmentPolicy":
        return cls.from_dict(json.loads(text))

    def replace(self, **changes) -> "AugmentPolicy":
        """A copy with some fields changed (validated again)."""
        return type(self).from_dict({**self.to_dict(), **changes})

    @classmethod
    def preset(cls, name: str) -> "AugmentPolicy":
        """A named policy from `PRESETS` ("none", "default", "article002", "article003", "article004")."""
        try:
            return PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown augmentation preset {name!r}; choose one of {sorted(PRESETS)}") from None


_OFF = dict(rotation=0.0, zoom=0.0, shift=0.0, brightness=(1.0, 1.0), gamma=(1.0, 1.0), crop=0.0)

#: Named policies. Each reproduces a reference article's settings (see PRESET_SOURCES).
PRESETS: dict[str, AugmentPolicy] = {
    # Identity: both executors return the input unchanged.
    "none": AugmentPolicy(**_OFF),
    # Mild and safe for any CXR task: the training default.
    "default": AugmentPolicy(),
    # Article 002 (pneumonia, 4-block CNN): "rotation 20 degrees and zoom 30 %" were the final
    # augmentations; experiment IV added brightness 70 %-130 % (after a PLOS ONE paper).
    "article002": AugmentPolicy(**{**_OFF, "rotation": 20.0, "zoom": 0.3, "brightness": (0.7, 1.3)}),
    # Article 003 (ImageDataGenerator): rotation_range=10, width/height_shift_range=0 ("X-rays are
    # always centred"), vertical_flip=False ("very unlikely to get a vertically flipped X-ray").
    "article003": AugmentPolicy(**{**_OFF, "rotation": 10.0}),
    # Article 004 (COVID-19, VGG16, imgaug): gamma contrast "to change the intensity of the white
    # pixels" and random crops, "so the model does not just count white pixels". The article gives
    # no numbers; we use imgaug's documented example ranges, GammaContrast((0.5, 2.0)) and
    # Crop(percent=(0, 0.1)).
    "article004": AugmentPolicy(**{**_OFF, "gamma": (0.5, 2.0), "crop": 0.1}),
}

PRESET_SOURCES: dict[str, str] = {
    "none": "no augmentation (identity)",
    "default": "cxrnb default: mild rotation/zoom/crop, exposure and gamma; no shift, no flips",
    "article002": "article 002: rotation 20 deg, zoom 30 %, brightness 70-130 %",
    "article003": "article 003: ImageDataGenerator(rotation_range=10, shifts 0, vertical_flip=False)",
    "article004": "article 004: imgaug GammaContrast + random Crop (values: imgaug's documented examples)",
}


def as_policy(policy: AugmentPolicy | Mapping | str) -> AugmentPolicy:
    """The one way every executor reads its `policy` argument: a policy as it is, a preset name
    (`PRESETS`), or a mapping of fields (`AugmentPolicy.from_dict`, e.g. a saved layer config)."""
    if isinstance(policy, AugmentPolicy):
        return policy
    if isinstance(policy, str):
        return AugmentPolicy.preset(policy)
    if isinstance(policy, Mapping):
        return AugmentPolicy.from_dict(policy)
    raise TypeError(f"policy must be an AugmentPolicy, a preset name or a mapping of fields, "
                    f"got {type(policy).__name__}")


def describe(policy: AugmentPolicy | Mapping | str = "default"):
    """A table (pandas DataFrame) of the policy for a notebook: field, value, what it simulates, and
    why it is safe (or not) for chest X-rays."""
    import pandas as pd

    p = as_policy(policy)
    rows = [
        ("rotation", f"±{p.rotation:g}°", "patient tilted on the detector",
         "safe up to ~20° (seen on real films); beyond 45° refused"),
        ("zoom", f"±{p.zoom:.0%}", "source-detector distance, patient size",
         "safe while both lungs stay in the field (<= 50 %)"),
        ("shift", f"±{p.shift:.0%}", "patient off-centre",
         "off by default: films are centred on the chest (article 003)"),
        ("brightness", f"×{p.brightness[0]:g}-{p.brightness[1]:g}", "exposure (mAs) differences",
         "safe; a factor near 0 would erase the image"),
        ("gamma", f"γ {p.gamma[0]:g}-{p.gamma[1]:g}", "detector response / kVp / post-processing",
         "safe; changes how white bone and consolidation look (article 004)"),
        ("crop", f"≤{p.crop:.0%} per side", "collimation, tighter framing",
         "safe while small; large crops cut the costophrenic angles"),
        ("horizontal_flip", str(p.horizontal_flip), "(nothing real)",
         "unsafe: mimics dextrocardia, L/R markers then lie; off by default"),
        ("vertical_flip", str(p.vertical_flip), "(nothing real)",
         "refused: patients are never upside down on a chest X-ray"),
    ]
    return pd.DataFrame(rows, columns=["field", "value", "simulates", "for chest X-rays"])
