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
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

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
