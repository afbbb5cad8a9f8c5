"""Classification report against ground truth (scikit-learn metrics)."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np


@dataclasses.dataclass
class ClassificationReport:
    """Per-class and class-weighted precision, recall, F1, and the confusion matrix.

    Attributes
    ----------
    classes : list
        Class labels, the order of every per-class array and of the matrix.
    precision, recall, f1 : ndarray (n_classes,)
    support : ndarray (n_classes,) int
        Number of true patterns per class.
    weighted_precision, weighted_recall, weighted_f1 : float
        Averages weighted by support (the paper's "class-weighted" values).
    accuracy : float
    confusion : ndarray (n_classes, n_classes) int
        Rows: true class; columns: predicted class.
    n_no_solution : int
        Patterns predicted as "no solution" (counted as wrong).
    """

    classes: list
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    weighted_precision: float
    weighted_recall: float
    weighted_f1: float
    accuracy: float
    confusion: np.ndarray
    n_no_solution: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "classes": [c.item() if hasattr(c, "item") else c for c in self.classes],
            "precision": self.precision.tolist(), "recall": self.recall.tolist(),
            "f1": self.f1.tolist(), "support": self.support.tolist(),
            "weighted_precision": self.weighted_precision, "weighted_recall": self.weighted_recall,
            "weighted_f1": self.weighted_f1, "accuracy": self.accuracy,
            "confusion": self.confusion.tolist(), "n_no_solution": self.n_no_solution,
        }

    def __str__(self) -> str:
        w = max(8, max(len(str(c)) for c in self.classes) + 1)
        lines = [f"{'class':>{w}} precision  recall      f1  support"]
        for c, p, r, f, s in zip(self.classes, self.precision, self.recall, self.f1, self.support):
            lines.append(f"{str(c):>{w}} {p:9.3f} {r:7.3f} {f:7.3f} {s:8d}")
        lines.append(f"{'weighted':>{w}} {self.weighted_precision:9.3f} {self.weighted_recall:7.3f} "
                     f"{self.weighted_f1:7.3f} {int(self.support.sum()):8d}")
        lines.append(f"accuracy {self.accuracy:.3f}; no solution: {self.n_no_solution}")
        lines.append("confusion matrix (rows true, columns predicted):")
        lines.append(" " * w + "".join(f"{str(c):>8}" for c in self.classes))
        for c, row in zip(self.classes, self.confusion):
            lines.append(f"{str(c):>{w}}" + "".join(f"{v:8d}" for v in row))
        return "\n".join(lines)


def classification_report(y_true: Sequence, y_pred: Sequence, classes: Sequence) -> ClassificationReport:
    """Compare predicted with true labels.

    Predictions outside ``classes`` (the "no solution" label) count as wrong:
    they lower recall but no class's precision.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    classes = list(classes)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=classes, average=None,
                                                 zero_division=0)
    wp, wr, wf, _ = precision_recall_fscore_support(y_true, y_pred, labels=classes, average="weighted",
                                                    zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=classes)
    known = np.isin(y_pred, classes)
    return ClassificationReport(classes, p, r, f, s.astype(int), float(wp), float(wr), float(wf),
                                float(np.mean(y_true == y_pred)), cm, int((~known).sum()))
