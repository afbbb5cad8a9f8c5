"""The shared training loop: early stopping, best weights, cancel, NaN losses, histories."""

import threading

import pytest
import torch
from torch import nn

from napari_microstructure.core.errors import MicrostructureError, TrainingCancelled
from napari_microstructure.core.nn.training import TrainingConfig, TrainingHistory, train_loop

CPU = torch.device("cpu")


def _regression(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.3
    return x, y


def _mse(model, batch):
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def test_loss_falls_and_best_weights_are_kept():
    x, y = _regression()
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    hist = train_loop(model, lambda epoch: [(x, y)], _mse, lambda: [(x, y)],
                      TrainingConfig(max_epochs=60, learning_rate=0.05, patience=60), CPU)
    assert len(hist.train_loss) == len(hist.val_loss) == 60
    assert hist.val_loss[-1] < 0.2 * hist.val_loss[0]
    best = min(hist.val_loss)
    assert hist.val_loss[hist.best_epoch] == best
    with torch.no_grad():
        assert float(_mse(model, (x, y))) == pytest.approx(best, rel=1e-4)  # best weights restored
    assert not model.training and hist.seconds > 0


def test_patience_stops_training_without_improvement():
    x, y = _regression()
    model = nn.Linear(3, 1)
    frozen = TrainingConfig(max_epochs=50, learning_rate=1e-9, patience=3, min_delta=1.0)
    hist = train_loop(model, lambda epoch: [(x, y)], _mse, None, frozen, CPU)
    assert hist.stopped_early and len(hist.train_loss) == 4 and hist.best_epoch == 0
    assert hist.val_loss == []  # without validation batches the training loss is monitored


def test_progress_reports_every_epoch_and_cancel_raises():
    x, y = _regression()
    seen = []
    train_loop(nn.Linear(3, 1), lambda epoch: [(x, y)], _mse, lambda: [(x, y)],
               TrainingConfig(max_epochs=3, patience=5), CPU, progress=seen.append, stage="fit")
    epochs = [p for p in seen if "train_loss" in p.metrics]  # (batch reports may come between)
    assert [p.step for p in epochs] == [1, 2, 3] and {p.stage for p in seen} == {"fit"}
    assert set(epochs[-1].metrics) == {"epoch", "train_loss", "val_loss"}
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(TrainingCancelled):
        train_loop(nn.Linear(3, 1), lambda epoch: [(x, y)], _mse, None, TrainingConfig(max_epochs=3), CPU,
                   cancel=cancel)


def test_nan_loss_is_a_clear_error():
    x, y = _regression()
    y[0] = float("nan")
    with pytest.raises(MicrostructureError, match="NaN or infinite; lower the learning rate"):
        train_loop(nn.Linear(3, 1), lambda epoch: [(x, y)], _mse, None, TrainingConfig(max_epochs=2), CPU)


@pytest.mark.parametrize("field, value, match", [
    ("max_epochs", 0, "max_epochs"), ("learning_rate", 0.0, "learning_rate"),
    ("weight_decay", -1.0, "weight_decay"), ("patience", 0, "patience"), ("batch_size", 1, "batch_size"),
    ("validation_fraction", 1.0, "validation_fraction"),
])
def test_config_is_validated(field, value, match):
    with pytest.raises(MicrostructureError, match=match):
        TrainingConfig(**{field: value}).validate()


def test_history_round_trip_ensemble_and_old_ebsd_files():
    a = TrainingHistory([1.0, 0.5], [1.2, 0.7], 1, False, 2.0, n_train=8, n_validation=2)
    b = TrainingHistory([0.9], [1.1], 0, True, 1.0, n_train=8, n_validation=2)
    assert TrainingHistory.from_dict(a.to_dict()) == a
    both = TrainingHistory.ensemble([a, b])
    assert both.members == [a, b] and both.train_loss == a.train_loss and both.epochs == 2
    assert TrainingHistory.from_dict(both.to_dict()) == both
    assert TrainingHistory.ensemble([a]) is a
    # EBSD files before one history type stored a list of dicts with extra keys
    old = [{k: v for k, v in a.to_dict().items() if k != "members"} | {"unknown": 1}, b.to_dict()]
    assert TrainingHistory.from_dict(old) == both
