"""EBSD pattern preprocessing, stored in the model so prediction repeats it exactly.

For each pattern, in this order:

1. **resize** to the network input (``input_size`` x ``input_size`` pixels)
   with :func:`skimage.transform.resize` (bilinear, anti-aliased when
   shrinking);
2. **gain normalisation**: divide by the pattern's mean intensity, so that
   camera gain or exposure differences between data sets cancel;
3. **static background**: subtract the mean (gain-normalised) pattern of the
   training set, computed in :meth:`PatternPreprocessor.fit` and saved in the
   model. Resizing is linear, so subtracting after resizing equals resizing
   a background-corrected pattern. ``static_background=False`` skips it;
   :meth:`transform` also takes a background of the data set at hand (e.g. the
   mean pattern of the map), which is the right choice when the map comes
   from another detector or session than the training patterns;
4. **dynamic background**: subtract a Gaussian blur of the pattern itself
   (standard deviation ``dynamic_sigma`` times the pattern width), which
   removes the smooth intensity gradients that vary from pattern to pattern;
5. **per-pattern normalisation**: zero mean, unit standard deviation, then
   ``clip((z + c) / (2 c), 0, 1)`` with ``c = clip_sigma``: values in [0, 1]
   as the backbones expect, hot pixels clipped.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from scipy import ndimage

from ..errors import MicrostructureError, NotFittedError
from ._validation import check_finite, check_pattern_shape, check_stack, warn_if_not_square


class PatternPreprocessor:
    """Background correction, normalisation and resizing of Kikuchi patterns.

    Parameters
    ----------
    input_size : int
        Side of the square network input in pixels.
    static_background : bool
        Subtract the mean training pattern (see module docstring).
    dynamic_sigma : float
        Standard deviation of the Gaussian blur of the dynamic background
        correction, as a fraction of the pattern width (0 disables it).
    clip_sigma : float
        Normalised intensities are clipped at +-``clip_sigma`` standard
        deviations and mapped to [0, 1].

    Attributes
    ----------
    static_background_ : ndarray (input_size, input_size) float32
        Mean gain-normalised training pattern (zeros if disabled).
    """

    def __init__(self, input_size: int = 60, static_background: bool = True,
                 dynamic_sigma: float = 0.125, clip_sigma: float = 3.0) -> None:
        self.input_size = input_size
        self.static_background = static_background
        self.dynamic_sigma = dynamic_sigma
        self.clip_sigma = clip_sigma

    # -- parameters -------------------------------------------------------
    def _check_params(self) -> None:
        if not (isinstance(self.input_size, (int, np.integer)) and 16 <= self.input_size <= 1024):
            raise MicrostructureError(
                f"input_size={self.input_size!r}; give an integer number of pixels between 16 and 1024"
            )
        if not (0 <= float(self.dynamic_sigma) < 1):
            raise MicrostructureError(
                f"dynamic_sigma={self.dynamic_sigma!r}; give a fraction of the pattern width in [0, 1) "
                "(0 disables the dynamic background correction)"
            )
        if not float(self.clip_sigma) > 0:
            raise MicrostructureError(f"clip_sigma={self.clip_sigma!r}; give a positive number")

    def get_params(self) -> dict[str, Any]:
        return {"input_size": int(self.input_size), "static_background": bool(self.static_background),
                "dynamic_sigma": float(self.dynamic_sigma), "clip_sigma": float(self.clip_sigma)}

    # -- steps ------------------------------------------------------------
    def _resize_normalise_gain(self, patterns: np.ndarray) -> np.ndarray:
        from skimage.transform import resize

        x = np.asarray(patterns, dtype=np.float32)
        size = int(self.input_size)
        if x.shape[1:] != (size, size):
            shrink = x.shape[1] > size or x.shape[2] > size
            x = resize(x, (x.shape[0], size, size), order=1, mode="edge",
                       anti_aliasing=shrink, preserve_range=True).astype(np.float32)
        mean = x.reshape(len(x), -1).mean(1)
        mean = np.where(np.abs(mean) > 1e-12, mean, 1.0).astype(np.float32)
        return x / mean[:, None, None]

    def fit(self, patterns: Any) -> "PatternPreprocessor":
        """Compute the static background (mean pattern) of training patterns (N, h, w)."""
        self._check_params()
        patterns = check_stack(patterns)
        size = int(self.input_size)
        warn_if_not_square(patterns.shape, size)
        self.pattern_shape_ = tuple(int(v) for v in patterns.shape[1:])
        if self.static_background:
            total = np.zeros((size, size), np.float64)
            for start in range(0, len(patterns), 1024):
                total += self._resize_normalise_gain(patterns[start:start + 1024]).sum(0)
            self.static_background_ = (total / len(patterns)).astype(np.float32)
        else:
            self.static_background_ = np.zeros((size, size), np.float32)
        return self

    def mean_background(self, patterns: Any, chunk: int = 1024) -> np.ndarray:
        """Mean gain-normalised pattern of ``patterns`` at the input size, read in chunks.

        Use it as ``transform(..., background=...)`` for a map from another
        session than the training patterns.
        """
        self._check_params()
        flat = patterns.reshape(-1, *patterns.shape[-2:])
        total = np.zeros((int(self.input_size),) * 2, np.float64)
        for start in range(0, flat.shape[0], chunk):
            block = np.asarray(flat[start:start + chunk])
            total += self._resize_normalise_gain(block).sum(0)
        return (total / flat.shape[0]).astype(np.float32)

    def transform(self, patterns: Any, background: Optional[np.ndarray] = None,
                  check: bool = True) -> np.ndarray:
        """Preprocess patterns (N, h, w) -> float32 (N, input_size, input_size) in [0, 1].

        Parameters
        ----------
        patterns : array-like (N, h, w)
        background : ndarray (input_size, input_size), optional
            Static background to use instead of the stored ``static_background_``.
        check : bool
            Validate the input (off for internal chunks already checked).
        """
        if not hasattr(self, "static_background_"):
            raise NotFittedError("this PatternPreprocessor is not fitted; call fit(patterns) first")
        if check:
            patterns = check_stack(patterns)
        else:
            check_finite(np.asarray(patterns))
        check_pattern_shape(np.shape(patterns), getattr(self, "pattern_shape_", None))
        x = self._resize_normalise_gain(patterns)
        if self.static_background:
            bg = self.static_background_ if background is None else np.asarray(background, np.float32)
            if bg.shape != x.shape[1:]:
                raise MicrostructureError(
                    f"background has shape {bg.shape} but the patterns are resized to {x.shape[1:]}; "
                    "compute it with mean_background()"
                )
            x = x - bg[None]
        if self.dynamic_sigma > 0:
            s = float(self.dynamic_sigma) * x.shape[2]
            x = x - ndimage.gaussian_filter(x, sigma=(0, s, s), mode="nearest", truncate=3.0)
        flat = x.reshape(len(x), -1)
        mu = flat.mean(1)[:, None, None]
        sd = flat.std(1)[:, None, None]
        sd = np.where(sd > 1e-12, sd, 1.0)
        c = float(self.clip_sigma)
        z = (x - mu) / sd
        return np.clip((z + c) / (2.0 * c), 0.0, 1.0).astype(np.float32)

    def fit_transform(self, patterns: Any) -> np.ndarray:
        return self.fit(patterns).transform(patterns)

    # -- persistence ------------------------------------------------------
    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Parameters (JSON) and arrays for a model file."""
        if not hasattr(self, "static_background_"):
            raise NotFittedError("this PatternPreprocessor is not fitted; call fit(patterns) first")
        params = self.get_params()
        shape = getattr(self, "pattern_shape_", None)
        if shape is not None:
            params["pattern_shape"] = list(shape)
        return params, {"static_background": self.static_background_}

    @classmethod
    def from_state(cls, params: dict, arrays: dict) -> "PatternPreprocessor":
        params = dict(params)
        shape = params.pop("pattern_shape", None)
        obj = cls(**params)
        obj.pattern_shape_ = tuple(int(v) for v in shape) if shape is not None else None
        bg = arrays["static_background"]
        obj.static_background_ = np.asarray(bg.numpy() if hasattr(bg, "numpy") else bg, np.float32)
        return obj
