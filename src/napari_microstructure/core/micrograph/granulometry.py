"""Granulometry in micrometres: how much of a crop's dark and bright features is narrower than a size.

Frozen ImageNet features see texture, not scale: dark round pores of a few
micrometres and graphite nodules of tens of micrometres look alike to them at
crops of different fields of view. Metallographers tell such structures apart
by the size of their features in micrometres (particle and grain size), and so
does this descriptor, a pattern spectrum (Serra's granulometry): for each
radius r of :data:`RADII_UM`, the mean depth of the dark features that a
square closing of side 2r + 1 pixels removes, and of the bright features an
opening of that side removes. The crop is first brought to :data:`SIDE`
pixels (block mean) and its intensities stretched to its 2nd-98th
percentiles (so brightness and contrast do not count); radii under a pixel
give 0.

Measured on development data only (`docs/benchmarks.md`, "Granulometry"):
beside the frozen ImageNet features and the crop's scale, with weight 0.5 in
the k-NN novelty, it raised the crop-level AUROC (known against untrained
classes) from 0.926 to 0.959 and the image-level AUROC from 0.961 to 0.997
(20 training images per class; 0.920 to 0.954 and 0.961 to 0.993 with 8);
porous images against the known ones from 0.887 to 1.000.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

#: Feature radii (micrometres): two values (dark, bright) per radius.
RADII_UM = (0.5, 1.0, 2.0, 4.0, 8.0)
#: Number of values per crop.
N_VALUES = 2 * len(RADII_UM)
#: Crops are measured at this many pixels a side (speed: 256 crops in about 0.15 s on one core).
SIDE = 48


def granulometry(crops: torch.Tensor, fov_um: np.ndarray) -> np.ndarray:
    """``(B, N_VALUES)`` float32 pattern spectra of crops ``(B, 1, S, S)`` whose fields of view are ``fov_um``.

    Value ``2 k`` is the mean depth of the dark features narrower than about
    ``2 RADII_UM[k]`` (closing minus crop), ``2 k + 1`` that of the bright ones
    (crop minus opening), in units of the crop's 2nd-98th percentile range.
    """
    with torch.inference_mode():
        x = crops.detach().float().cpu()
        if x.shape[-1] != SIDE:
            x = F.interpolate(x, size=(SIDE, SIDE), mode="area")
        x = x[:, 0].numpy()
    b = len(x)
    flat = x.reshape(b, -1)
    lo, hi = np.quantile(flat, [0.02, 0.98], axis=1)
    x = (x - lo[:, None, None]) / np.maximum(hi - lo, 1e-6)[:, None, None]
    fov = np.asarray(fov_um, np.float64).reshape(-1)
    sides = np.minimum(np.rint(2.0 * np.asarray(RADII_UM)[None, :] * SIDE / fov[:, None]).astype(int) + 1, SIDE)
    out = np.zeros((b, N_VALUES), np.float32)
    for side in np.unique(sides):
        if side < 2:
            continue
        rows, radii = np.nonzero(sides == side)
        part = x[rows]
        size = (1, int(side), int(side))
        closed = ndimage.minimum_filter(ndimage.maximum_filter(part, size=size, mode="nearest"), size=size,
                                        mode="nearest")
        opened = ndimage.maximum_filter(ndimage.minimum_filter(part, size=size, mode="nearest"), size=size,
                                        mode="nearest")
        out[rows, 2 * radii] = (closed - part).mean(axis=(1, 2))
        out[rows, 2 * radii + 1] = (part - opened).mean(axis=(1, 2))
    return out
