"""Materials augmentation in torch (runs on the GPU when the crops are there).

Geometric augmentation (rotation, mirroring, affine warp) happens while crops
are sampled (:mod:`.crops`). This module adds the photometric part on a batch
``(B, 1, S, S)`` of crops in [0, 1]: brightness, contrast and gamma; a local
blur where a dust particle sat on the lens; edge emphasis (phase boundaries
etched more strongly); Gaussian noise. Shapes are kept and values stay in [0, 1].
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import torch
import torch.nn.functional as F


@dataclasses.dataclass
class AugmentConfig:
    """Strength and probability of each augmentation.

    Attributes
    ----------
    rotation, mirror, warp
        Geometric: rotation by any angle, mirroring, and an affine warp whose
        shear/stretch has standard deviation ``warp``.
    brightness, contrast, gamma
        Additive shift (std), multiplicative contrast (std of log) and gamma
        (std of log).
    dust_probability, dust_radius
        Probability of a blurred disc and its radius as a fraction of the crop.
    edge_probability, edge_strength
        Probability and weight of adding the Sobel gradient magnitude.
    noise
        Standard deviation of additive Gaussian noise.
    """

    rotation: bool = True
    mirror: bool = True
    warp: float = 0.08
    brightness: float = 0.1
    contrast: float = 0.2
    gamma: float = 0.2
    dust_probability: float = 0.3
    dust_radius: tuple[float, float] = (0.05, 0.2)
    edge_probability: float = 0.2
    edge_strength: float = 0.5
    noise: float = 0.03

    @classmethod
    def off(cls) -> "AugmentConfig":
        """No augmentation at all."""
        return cls(rotation=False, mirror=False, warp=0.0, brightness=0.0, contrast=0.0,
                   gamma=0.0, dust_probability=0.0, edge_probability=0.0, noise=0.0)

    @classmethod
    def test_time(cls) -> "AugmentConfig":
        """The milder augmentation used on prediction crops (geometry and light photometry)."""
        return cls(warp=0.0, brightness=0.05, contrast=0.1, gamma=0.1, dust_probability=0.0,
                   edge_probability=0.0, noise=0.0)

    def at_test_time(self) -> "AugmentConfig":
        """The augmentation of validation, calibration and prediction crops for this training setting.

        :meth:`test_time` with this configuration's ``rotation`` and
        ``mirror`` switches (a model trained without rotation is never shown
        rotated crops), or no augmentation at all when this one is :meth:`off`.
        """
        if self == self.off():
            return self.off()
        return dataclasses.replace(self.test_time(), rotation=self.rotation, mirror=self.mirror)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "AugmentConfig":
        """Inverse of :meth:`to_dict` (lists from JSON become tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    @classmethod
    def coerce(cls, value: Any) -> "AugmentConfig":
        if isinstance(value, cls):
            return value
        if value is True or value is None:
            return cls()
        if value is False:
            return cls.off()
        if isinstance(value, dict):
            return cls.from_dict(value)
        raise TypeError(f"augment must be True, False, a dict or an AugmentConfig, not {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _gaussian_kernel(sigma: float, device: torch.device) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, 1, H, W)`` with reflection padding."""
    k = _gaussian_kernel(sigma, x.device)
    r = (len(k) - 1) // 2
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude of ``(B, 1, H, W)`` (Sobel), same shape."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device) / 8.0
    k = torch.stack([kx, kx.t()])[:, None]
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k)
    return torch.sqrt((g**2).sum(1, keepdim=True) + 1e-12)


def augment_photometric(
    crops: torch.Tensor, config: AugmentConfig, generator: Optional[torch.Generator] = None
) -> torch.Tensor:
    """Apply the photometric augmentations of ``config`` to a batch of crops.

    Parameters
    ----------
    crops : torch.Tensor
        ``(B, 1, S, S)`` with values in [0, 1].
    config : AugmentConfig
    generator : torch.Generator, optional
        On the crops' device, for reproducible runs.

    Returns
    -------
    torch.Tensor
        Same shape, values in [0, 1].
    """
    b, _, s, _ = crops.shape
    dev = crops.device

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, device=dev, generator=generator)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=dev, generator=generator)

    x = crops
    if config.dust_probability > 0:
        hit = rand(b) < config.dust_probability
        if bool(hit.any()):
            blurred = gaussian_blur(x, sigma=max(1.0, s / 40.0))
            yy, xx = torch.meshgrid(
                torch.arange(s, device=dev, dtype=torch.float32),
                torch.arange(s, device=dev, dtype=torch.float32),
                indexing="ij",
            )
            cy, cx = rand(b) * s, rand(b) * s
            lo, hi = config.dust_radius
            radius = (lo + (hi - lo) * rand(b)) * s
            d2 = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2
            soft = torch.sigmoid((radius[:, None, None] ** 2 - d2) / (radius[:, None, None] * 2.0 + 1.0))
            soft = (soft * hit[:, None, None].float())[:, None]
            shade = 1.0 - 0.3 * rand(b)[:, None, None, None]  # dust also darkens a little
            x = x * (1 - soft) + blurred * shade * soft
    if config.edge_probability > 0:
        hit = (rand(b) < config.edge_probability).float()[:, None, None, None]
        edges = sobel_magnitude(x)
        edges = edges / (edges.amax(dim=(2, 3), keepdim=True) + 1e-6)
        sign = torch.where(rand(b) < 0.5, -1.0, 1.0)[:, None, None, None]
        x = x + hit * sign * config.edge_strength * edges
    if config.gamma > 0:
        g = torch.exp(randn(b) * config.gamma)[:, None, None, None]
        x = x.clamp(0.0, 1.0) ** g
    if config.contrast > 0:
        c = torch.exp(randn(b) * config.contrast)[:, None, None, None]
        mean = x.mean(dim=(2, 3), keepdim=True)
        x = (x - mean) * c + mean
    if config.brightness > 0:
        x = x + randn(b)[:, None, None, None] * config.brightness
    if config.noise > 0:
        x = x + randn(*x.shape) * (config.noise * rand(b)[:, None, None, None])
    return x.clamp(0.0, 1.0)
