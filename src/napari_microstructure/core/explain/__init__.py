"""Explanations of micrograph and EBSD classifiers (no Qt, no napari).

- :func:`descriptor_map`: training descriptors, the Gaussian mixture's
  log-likelihood and threshold, and the crops of an image (Larmuseau et al.).
- :func:`attribution`: integrated gradients or GradientSHAP (captum) of a
  crop, a whole micrograph (accumulated over crops) or an EBSD pattern.
- :func:`first_layer_kernels`, :func:`feature_maps`,
  :func:`similar_kernel_pairs` (Kaufmann et al.).
- :func:`descriptor_dimension_report`, :func:`pca_reduction_report`,
  :func:`generalisation_report` (Sardeshmukh et al., Ling et al.).
- ``plot_*`` functions draw each as a matplotlib figure.
"""

from .adapters import EBSDAdapter, GaussianMixtureHead, MicrographAdapter, ModelAdapter, TorchAdapter, as_adapter
from .attribution import (METHODS, Attribution, attribution, background_set, class_ranking,
                          explain_top_classes, micrograph_background)
from .descriptors import DescriptorMap, ImageCrops, descriptor_map, sample_image_crops
from .filters import (FeatureMaps, KernelPairs, Kernels, conv_layers, feature_maps, first_layer_kernels,
                      similar_kernel_pairs)
from .plots import (plot_attribution, plot_confusion, plot_descriptor_map, plot_feature_maps,
                    plot_kernel_pairs, plot_kernels, plot_reduction, save_figure)
from .reduction import (GeneralisationReport, ReductionReport, backbone_features, descriptor_dimension_report,
                        generalisation_report, pca_reduction_report)

__all__ = [
    "Attribution", "DescriptorMap", "EBSDAdapter", "FeatureMaps", "GaussianMixtureHead", "GeneralisationReport",
    "ImageCrops", "KernelPairs", "Kernels", "METHODS", "MicrographAdapter", "ModelAdapter", "ReductionReport",
    "TorchAdapter", "as_adapter", "attribution", "backbone_features", "background_set", "class_ranking",
    "conv_layers", "descriptor_dimension_report", "descriptor_map", "explain_top_classes", "feature_maps",
    "first_layer_kernels", "generalisation_report", "micrograph_background", "pca_reduction_report", "plot_attribution",
    "plot_confusion", "plot_descriptor_map", "plot_feature_maps", "plot_kernel_pairs", "plot_kernels",
    "plot_reduction", "sample_image_crops", "save_figure", "similar_kernel_pairs",
]
