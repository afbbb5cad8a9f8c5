"""The few-shot micrograph pipeline: images with a pixel size, crops at physical
scale, augmentation, the estimator, open-set scoring, probability maps and
generated sample data."""
