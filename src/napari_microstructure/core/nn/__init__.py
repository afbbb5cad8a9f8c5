"""Torch parts both pipelines share: backbones (EfficientNet-Lite0, compact CNN),
descriptor networks, losses, the training loop, device choice, model files,
progress and cancel."""
