"""The training loop reports progress during an epoch, not only at its end."""

from __future__ import annotations

import torch

from napari_microstructure.core.nn import training
from napari_microstructure.core.nn.training import TrainingConfig, train_loop


def _setup(n_batches):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    data = [(torch.randn(8, 4), torch.randn(8, 1)) for _ in range(n_batches)]

    def loss_fn(m, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(m(x), y)

    return model, data, loss_fn


def test_batch_reports_between_epochs(monkeypatch):
    monkeypatch.setattr(training, "BATCH_REPORT_SECONDS", 0.0)  # report every batch
    model, data, loss_fn = _setup(5)
    reports = []
    # a generator has no len(): the loop learns the batches per epoch from the first epoch
    history = train_loop(model, lambda epoch: (b for b in data), loss_fn, None,
                         TrainingConfig(max_epochs=3, patience=10, batch_size=8), torch.device("cpu"),
                         progress=reports.append)
    assert len(history.train_loss) == 3
    batch = [r for r in reports if "batch" in r.metrics]
    epoch = [r for r in reports if "train_loss" in r.metrics]
    assert len(epoch) == 3 and len(batch) == 3 * 5
    # from the second epoch on, the position is counted in batches of all epochs
    later = [r for r in batch if r.metrics["epoch"] > 1]
    assert all(r.total == 3 * 5 for r in later)
    fractions = [r.fraction for r in later]
    assert fractions == sorted(fractions) and 0.3 < fractions[0] < fractions[-1] < 1.0
    assert "epoch 2/3, batch 1/5" in later[0].message


def test_silent_between_reports_when_fast(monkeypatch):
    monkeypatch.setattr(training, "BATCH_REPORT_SECONDS", 3600.0)
    model, data, loss_fn = _setup(4)
    reports = []
    train_loop(model, lambda epoch: data, loss_fn, None, TrainingConfig(max_epochs=2, patience=10, batch_size=8),
               torch.device("cpu"), progress=reports.append)
    assert [r.step for r in reports] == [1, 2] and all("train_loss" in r.metrics for r in reports)
