import pytest
import torch

from napari_microstructure.core.errors import MicrostructureError
from napari_microstructure.core.nn.losses import contrastive_loss, pairwise_distances, triplet_loss


def _points():
    # class 0 at (0,0) and (0,1); class 1 at (2,0) and (3,0)
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [2.0, 0.0], [3.0, 0.0]])
    y = torch.tensor([0, 0, 1, 1])
    return x, y


def test_batch_hard_triplet_by_hand():
    x, y = _points()
    # anchor 0: hardest positive 1.0, nearest negative 2.0 -> max(0, 1 - 2 + 1.5) = 0.5
    # anchor 1: positive 1.0, negatives sqrt(5)=2.236, sqrt(10) -> max(0, 1 - 2.236 + 1.5) = 0.264
    # anchor 2: positive 1.0, negatives 2.0, sqrt(5) -> 0.5
    # anchor 3: positive 1.0, negatives 3.0, sqrt(10) -> 0
    expected = (0.5 + (2.5 - 5**0.5) + 0.5 + 0.0) / 4
    assert float(triplet_loss(x, y, margin=1.5, mining="batch-hard")) == pytest.approx(expected, abs=1e-5)


def test_all_triplets_by_hand():
    x, y = _points()
    d = pairwise_distances(x)
    losses = []
    for a in range(4):
        for p in range(4):
            for n in range(4):
                if a != p and y[a] == y[p] and y[n] != y[a]:
                    v = max(0.0, float(d[a, p] - d[a, n]) + 1.5)
                    if v > 0:
                        losses.append(v)
    assert float(triplet_loss(x, y, 1.5, "all")) == pytest.approx(sum(losses) / len(losses), abs=1e-5)


def test_semi_hard_zero_when_well_separated():
    x = torch.tensor([[0.0, 0.0], [0.0, 0.1], [10.0, 0.0], [10.0, 0.1]])
    y = torch.tensor([0, 0, 1, 1])
    assert float(triplet_loss(x, y, 1.0, "semi-hard")) == pytest.approx(0.0)
    assert float(triplet_loss(x, y, 1.0, "batch-hard")) == pytest.approx(0.0)


def test_contrastive_by_hand():
    x, y = _points()
    d = pairwise_distances(x)
    total = 0.0
    pairs = 0
    for i in range(4):
        for j in range(i + 1, 4):
            total += float(d[i, j] ** 2) if y[i] == y[j] else max(0.0, 2.5 - float(d[i, j])) ** 2
            pairs += 1
    assert float(contrastive_loss(x, y, margin=2.5)) == pytest.approx(total / pairs, abs=1e-5)


def test_gradients_are_finite_for_coincident_points():
    x = torch.zeros(4, 2, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1])
    triplet_loss(x, y, 1.0, "semi-hard").backward()
    assert torch.isfinite(x.grad).all()


def test_single_class_batch_is_refused():
    with pytest.raises(MicrostructureError, match="two classes"):
        triplet_loss(torch.randn(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(MicrostructureError, match="unknown mining"):
        triplet_loss(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]), mining="hardest")
