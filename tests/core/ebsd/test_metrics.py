"""Classification report: per-class and class-weighted scores, confusion matrix."""

import numpy as np
import pytest

from napari_microstructure.core.ebsd.metrics import classification_report


def test_report_values():
    y_true = np.array([221, 221, 221, 225, 225, 229])
    y_pred = np.array([221, 221, 225, 225, 0, 229])  # 0 = no solution
    rep = classification_report(y_true, y_pred, [221, 225, 229])
    np.testing.assert_allclose(rep.precision, [1.0, 0.5, 1.0])
    np.testing.assert_allclose(rep.recall, [2 / 3, 0.5, 1.0])
    assert rep.weighted_recall == pytest.approx((2 + 1 + 1) / 6)
    assert rep.confusion.tolist() == [[2, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert rep.n_no_solution == 1
    assert rep.accuracy == pytest.approx(4 / 6)
    text = str(rep)
    assert "weighted" in text and "confusion" in text
    assert rep.as_dict()["classes"] == [221, 225, 229]
