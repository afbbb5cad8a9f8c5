"""Augmentation of what varies between EBSD acquisitions, on preprocessed patterns.

Fine-tuning on a few labelled patterns overfits to one session's detector,
noise and background. :class:`PatternAugment` perturbs a batch of
preprocessed patterns (values in [0, 1], as :class:`~.preprocess.PatternPreprocessor`
returns them) with, each drawn per pattern:

- projection-centre shift: a translation by up to ``shift`` of the width and a
  zoom by ``1 +- zoom`` (PCx/PCy and detector-distance changes), border pixels
  repeated;
- mirror (a mirrored Kikuchi pattern is the pattern of another orientation of
  the same crystal: Friedel's law makes every Laue class centrosymmetric);
- blur: Gaussian, standard deviation up to ``blur`` pixels;
- residual background: a random smooth field (linear ramp plus a Gaussian
  lobe) of amplitude up to ``background`` standard deviations;
- contrast and gamma: ``x ** gamma`` with gamma in ``gamma``;
- noise: Gaussian of standard deviation up to ``noise`` (shot and read noise
  after normalisation);

then the per-pattern normalisation of the preprocessor (zero mean, unit
standard deviation, clip at +-``clip_sigma``, map to [0, 1]) is repeated so
the network sees the same value range as at prediction.

:func:`augment_profiles` does the same for the band-profile classifier, on its
features (:mod:`.bands`): the orientation is found once, and what varies
between acquisitions is applied to the profiles it indexes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import MicrostructureError


@dataclasses.dataclass
class PatternAugment:
    """Random acquisition variation for batches ``(B, 1, H, W)`` in [0, 1] (see module docstring)."""

    shift: float = 0.04
    zoom: float = 0.06
    mirror: bool = True
    blur: float = 1.0
    background: float = 0.6
    gamma: tuple = (0.75, 1.35)
    noise: float = 0.08
    clip_sigma: float = 3.0
    probability: float = 0.9

    def __post_init__(self) -> None:
        for name in ("shift", "zoom", "blur", "background", "noise"):
            if float(getattr(self, name)) < 0:
                raise MicrostructureError(f"{name}={getattr(self, name)!r}; give a value >= 0")
        lo, hi = self.gamma
        if not 0 < lo <= hi:
            raise MicrostructureError(f"gamma={self.gamma!r}; give (low, high) with 0 < low <= high")
        if not 0 <= self.probability <= 1:
            raise MicrostructureError(f"probability={self.probability!r}; give a value in [0, 1]")

    def __call__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Augmented copy of ``x`` (B, 1, H, W) float in [0, 1]."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise MicrostructureError(f"expected patterns (B, 1, H, W), got shape {tuple(x.shape)}")
        b, _, h, w = x.shape
        dev = x.device
        g = generator

        def u(lo, hi, n=b):
            return lo + (hi - lo) * torch.rand(n, generator=g).to(dev)

        on = (torch.rand(b, generator=g) < self.probability).to(dev)
        out = x.float()
        # projection-centre shift and zoom (+ mirror) in one affine resampling
        scale = 1.0 + u(-self.zoom, self.zoom) * on
        sx = torch.where(self.mirror & (torch.rand(b, generator=g).to(dev) < 0.5), -1.0, 1.0)
        tx = 2 * u(-self.shift, self.shift) * on
        ty = 2 * u(-self.shift, self.shift) * on
        theta = torch.zeros(b, 2, 3, device=dev)
        theta[:, 0, 0] = sx / scale
        theta[:, 1, 1] = 1.0 / scale
        theta[:, 0, 2] = tx
        theta[:, 1, 2] = ty
        grid = F.affine_grid(theta, (b, 1, h, w), align_corners=False)
        out = F.grid_sample(out, grid, mode="bilinear", padding_mode="border", align_corners=False)
        # blur with a per-batch sigma (one kernel; cheap), applied to the augmented patterns only
        if self.blur > 0:
            sigma = float(u(0, self.blur, 1)[0])
            if sigma > 0.2:
                r = max(1, int(math.ceil(2.5 * sigma)))
                t = torch.arange(-r, r + 1, device=dev, dtype=out.dtype)
                k = torch.exp(-0.5 * (t / sigma) ** 2)
                k = k / k.sum()
                blurred = F.conv2d(F.pad(out, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
                blurred = F.conv2d(F.pad(blurred, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
                pick = (on & (torch.rand(b, generator=g).to(dev) < 0.5)).view(b, 1, 1, 1)
                out = torch.where(pick, blurred, out)
        # standardise, then residual background in units of the pattern's standard deviation
        z = _standardise(out)
        if self.background > 0:
            yy = torch.linspace(-1, 1, h, device=dev).view(1, h, 1)
            xx = torch.linspace(-1, 1, w, device=dev).view(1, 1, w)
            ang = u(0, 2 * math.pi)
            ramp = torch.cos(ang).view(b, 1, 1) * xx + torch.sin(ang).view(b, 1, 1) * yy
            cx, cy, wid = u(-1, 1), u(-1, 1), u(0.4, 1.2)
            lobe = torch.exp(-((xx - cx.view(b, 1, 1)) ** 2 + (yy - cy.view(b, 1, 1)) ** 2)
                             / (2 * wid.view(b, 1, 1) ** 2))
            amp = (u(0, self.background) * on).view(b, 1, 1)
            field = amp * (0.5 * ramp + (lobe - lobe.mean(dim=(1, 2), keepdim=True)))
            z = z + field.unsqueeze(1)
        # contrast / gamma on [0, 1]
        c = float(self.clip_sigma)
        y = ((z + c) / (2 * c)).clamp(0, 1)
        lo, hi = self.gamma
        gam = torch.exp(u(math.log(lo), math.log(hi))).view(b, 1, 1, 1)
        gam = torch.where(on.view(b, 1, 1, 1), gam, torch.ones_like(gam))
        y = y.clamp_min(1e-6) ** gam
        if self.noise > 0:
            sd = (u(0, self.noise) * on).view(b, 1, 1, 1)
            y = y + sd * torch.randn(y.shape, generator=g).to(dev)
        return ((_standardise(y) + c) / (2 * c)).clamp(0, 1)


def _standardise(x: torch.Tensor) -> torch.Tensor:
    mu = x.mean(dim=(1, 2, 3), keepdim=True)
    sd = x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    return (x - mu) / sd


def augment_profiles(features: np.ndarray, rng: np.random.Generator, copies: int, stretch: float = 1.35,
                     falloff: float = 0.5, contrast: float = 0.3) -> np.ndarray:
    """Augmented copies of band-profile features, as other acquisitions of the same patterns would give.

    Each copy of each pattern gets, drawn per pattern:

    - a band-width stretch by a factor in ``[1 / stretch, stretch]`` (log-uniform)
      along the profile axis: band widths scale with the wavelength (the
      accelerating voltage) and with the lattice parameter;
    - a fall-off: family ``f`` scaled by ``exp(-b * q_f)`` with ``b`` in
      ``[-falloff, falloff]`` and ``q_f`` its ``h^2 + k^2 + l^2`` over the largest
      (the Debye-Waller factor weakens high-order bands);
    - a contrast factor ``exp(c)``, ``c`` in ``[-contrast, contrast]``.

    Parameters
    ----------
    features : ndarray (N, N_FEATURES)
        Band profiles from :meth:`.bands.BandIndexer.describe`.
    rng : numpy.random.Generator
    copies : int
        Augmented copies per pattern (0: none).

    Returns
    -------
    ndarray (copies * N, N_FEATURES) float32
        Copy after copy, each in the order of ``features``.
    """
    from .bands import FAMILIES, N_FAMILIES, N_FEATURES, PROFILE_BINS

    x = np.asarray(features, np.float64)
    if x.ndim != 2 or x.shape[1] != N_FEATURES:
        raise MicrostructureError(f"features have shape {x.shape}; expected (N, {N_FEATURES}) band profiles")
    if copies < 0 or stretch < 1 or falloff < 0 or contrast < 0:
        raise MicrostructureError(
            f"copies={copies}, stretch={stretch}, falloff={falloff}, contrast={contrast}: give copies >= 0, "
            "stretch >= 1 and falloff, contrast >= 0")
    n = len(x)
    p = x.reshape(n, N_FAMILIES, PROFILE_BINS)
    q = np.array([sum(v * v for v in f) for f in FAMILIES], np.float64)
    q = q / q.max()
    centres = np.arange(PROFILE_BINS) + 0.5
    out = []
    for _ in range(int(copies)):
        s = np.exp(rng.uniform(-np.log(stretch), np.log(stretch), n))
        src = centres[None, :] / s[:, None] - 0.5          # where each stretched bin reads the profile
        lo = np.clip(np.floor(src).astype(np.int64), 0, PROFILE_BINS - 1)
        hi = np.minimum(lo + 1, PROFILE_BINS - 1)
        w = np.where(src < 0, 0.0, np.clip(src - np.floor(src), 0.0, 1.0))[:, None, :]
        a = np.take_along_axis(p, np.broadcast_to(lo[:, None, :], p.shape), 2)
        b = np.take_along_axis(p, np.broadcast_to(hi[:, None, :], p.shape), 2)
        r = a * (1 - w) + b * w
        r = r * np.exp(-rng.uniform(-falloff, falloff, (n, 1, 1)) * q[None, :, None])
        r = r * np.exp(rng.uniform(-contrast, contrast, (n, 1, 1)))
        out.append(r.reshape(n, N_FEATURES))
    return (np.concatenate(out) if out else np.empty((0, N_FEATURES))).astype(np.float32)
