"""EBSD pattern classification: preprocessing, the classifier, maps, metrics, simulation."""

from .classifier import EBSDClassifier, EBSDNet
from .mapping import MapResult, classify_map
from .metrics import ClassificationReport, classification_report
from .preprocess import PatternPreprocessor

__all__ = ["EBSDClassifier", "EBSDNet", "MapResult", "classify_map", "ClassificationReport",
           "classification_report", "PatternPreprocessor"]
