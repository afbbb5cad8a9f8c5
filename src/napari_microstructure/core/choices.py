"""Every choice list of the engine, in one place (no torch import).

The estimators validate against these tuples, and the widgets and the
command line offer them, so a new backbone or loss is added here once.
Default values come from the estimators' signatures
(:meth:`~napari_microstructure.core.base.Estimator.default_params`).
"""

from __future__ import annotations

#: Network backbones (:func:`~.nn.backbones.build_backbone`) of the EBSD classifier.
BACKBONES = ("compact", "efficientnet-lite0")
#: Backbones of the micrograph classifier: also frozen ImageNet features with a trained head
#: (:class:`~.nn.frozen.FrozenImageNet`, the default), first.
MICROGRAPH_BACKBONES = ("imagenet-frozen",) + BACKBONES
#: Metric-learning and classification losses of :class:`~.micrograph.fewshot.FewShotClassifier`.
LOSSES = ("triplet", "contrastive", "cross-entropy")
#: Triplet mining strategies.
MINING = ("batch-hard", "semi-hard", "all")
#: How an image's answer (a class or "none") is decided from its crops (:mod:`~.micrograph.verdict`).
IMAGE_RULES = ("most-probable", "fov-bins")
#: Probability-map methods (:func:`~.micrograph.probmap.probability_map`).
MAP_METHODS = ("shared", "exact")
#: Attribution methods (:func:`~.explain.attribution.attribution`).
ATTRIBUTION_METHODS = ("integrated-gradients", "gradient-shap")
#: Static backgrounds of EBSD maps (:func:`~.ebsd.mapping.classify_map`).
EBSD_BACKGROUNDS = ("model", "map")
#: The EBSD method beside the CNN backbones: :class:`~.ebsd.bandclassifier.BandProfileClassifier`.
BAND_PROFILES_METHOD = "band-profiles"
#: Device names (:func:`~.nn.device.select_device`; ``"cuda:N"`` is accepted too).
DEVICES = ("auto", "cpu", "cuda", "mps")

__all__ = ["ATTRIBUTION_METHODS", "BACKBONES", "DEVICES", "EBSD_BACKGROUNDS", "IMAGE_RULES", "LOSSES",
           "MAP_METHODS", "MICROGRAPH_BACKBONES", "MINING"]
