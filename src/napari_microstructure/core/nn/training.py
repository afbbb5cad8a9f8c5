"""The training loop shared by every classifier: Adam, early stopping, cancel.

Following Kaufmann et al. (2021): Adam with learning rate 1e-3 and weight decay
1e-5, early stopping on the validation loss with a minimum improvement
(``min_delta``) and a patience, the best weights restored at the end.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Any, Callable, Iterable, Optional

import torch
from torch import nn

from .device import autocast
from ..errors import MicrostructureError
from .progress import CancelToken, ProgressCallback, check_cancel, report

#: the longest a training loop stays silent between progress reports, in seconds
BATCH_REPORT_SECONDS = 1.0


@dataclasses.dataclass
class TrainingConfig:
    """Optimiser and early-stopping settings.

    Attributes
    ----------
    max_epochs : int
        Upper bound on the number of epochs.
    learning_rate, weight_decay : float
        Adam's parameters.
    patience : int
        Epochs without an improvement of at least ``min_delta`` in the
        validation loss before training stops.
    min_delta : float
        The smallest decrease of the validation loss counted as improvement.
    batch_size : int
        Inputs per optimisation step.
    validation_fraction : float
        Share of the labelled data held out for early stopping (and, for
        micrographs, for calibrating the open-set threshold).
    seed : int or None
        Seed for weights, sampling and augmentation; None for a random run.
    """

    max_epochs: int = 100
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    patience: int = 15
    min_delta: float = 1e-3
    batch_size: int = 32
    validation_fraction: float = 0.2
    seed: Optional[int] = 0

    def validate(self) -> None:
        if self.max_epochs < 1:
            raise MicrostructureError(f"max_epochs must be at least 1, got {self.max_epochs}")
        if not self.learning_rate > 0:
            raise MicrostructureError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.weight_decay < 0:
            raise MicrostructureError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.patience < 1:
            raise MicrostructureError(f"patience must be at least 1, got {self.patience}")
        if self.batch_size < 2:
            raise MicrostructureError(f"batch_size must be at least 2, got {self.batch_size}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise MicrostructureError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )


@dataclasses.dataclass
class TrainingHistory:
    """Losses per epoch and how training ended: the ``history_`` of every estimator.

    Attributes
    ----------
    train_loss, val_loss : list of float
        Mean loss of each epoch on the training and validation batches
        (``val_loss`` is empty without a validation set).
    best_epoch : int
        0-based epoch whose weights were kept (-1 before any epoch).
    stopped_early : bool
    seconds : float
        Wall time of training.
    n_train, n_validation : int
        Training and validation samples (images for micrographs, patterns for EBSD).
    members : list of TrainingHistory
        An ensemble's networks, one history each; the fields above are then
        those of the first network. Empty for a single network.
    """

    train_loss: list[float] = dataclasses.field(default_factory=list)
    val_loss: list[float] = dataclasses.field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    seconds: float = 0.0
    n_train: int = 0
    n_validation: int = 0
    members: list["TrainingHistory"] = dataclasses.field(default_factory=list)

    @property
    def epochs(self) -> int:
        """Epochs run (of the first network for an ensemble)."""
        return len(self.train_loss)

    @classmethod
    def ensemble(cls, members: list["TrainingHistory"]) -> "TrainingHistory":
        """One history for several networks (see :attr:`members`)."""
        if len(members) == 1:
            return members[0]
        first = dataclasses.replace(members[0], members=[])
        return dataclasses.replace(first, members=list(members))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Any) -> "TrainingHistory":
        """Inverse of :meth:`to_dict`; also reads the list of per-network dicts of older EBSD files."""
        if isinstance(values, list):
            return cls.ensemble([cls.from_dict(v) for v in values]) if values else cls()
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in dict(values).items() if k in known}
        fields["members"] = [cls.from_dict(m) for m in fields.get("members", [])]
        return cls(**fields)


def train_loop(
    model: nn.Module,
    train_batches: Callable[[int], Iterable[Any]],
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    val_batches: Optional[Callable[[], Iterable[Any]]],
    config: TrainingConfig,
    device: torch.device,
    *,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    stage: str = "train",
    batches_per_epoch: Optional[int] = None,
) -> TrainingHistory:
    """Train ``model`` in place and restore its best weights.

    Parameters
    ----------
    model : nn.Module
        Already on ``device``.
    train_batches : callable
        ``train_batches(epoch)`` yields the batches of one epoch.
    loss_fn : callable
        ``loss_fn(model, batch)`` moves the batch to the device and returns a
        scalar loss.
    val_batches : callable or None
        ``val_batches()`` yields validation batches; without it the training
        loss drives early stopping.
    progress, cancel
        See :mod:`napari_microstructure.core.nn.progress`. Cancel is checked
        between steps and raises :class:`TrainingCancelled`. Besides one
        report per epoch (with the losses in ``metrics``), a report goes out
        during an epoch whenever :data:`BATCH_REPORT_SECONDS` have passed
        since the last one (``metrics``: ``epoch``, ``batch``; no losses), so a
        progress bar moves at least every few seconds.
    batches_per_epoch : int, optional
        Batches in one epoch, for the position of the batch reports; taken from
        ``len(train_batches(epoch))`` when it has one, else learned from the
        first epoch.

    Returns
    -------
    TrainingHistory
    """
    config.validate()
    optimiser = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    history = TrainingHistory()
    best = math.inf
    best_state = copy.deepcopy(model.state_dict())
    waited = 0
    start = time.perf_counter()
    use_scaler = device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    last_report = start
    for epoch in range(config.max_epochs):
        model.train()
        total, count = 0.0, 0
        batches = train_batches(epoch)
        if batches_per_epoch is None and hasattr(batches, "__len__"):
            batches_per_epoch = len(batches)  # type: ignore[arg-type]
        for batch in batches:
            check_cancel(cancel)
            now = time.perf_counter()
            if progress is not None and now - last_report >= BATCH_REPORT_SECONDS:
                last_report = now
                if batches_per_epoch:
                    step, total_steps = epoch * batches_per_epoch + count, config.max_epochs * batches_per_epoch
                    where = f"batch {count + 1}/{batches_per_epoch}"
                else:
                    step, total_steps, where = epoch, config.max_epochs, f"batch {count + 1}"
                report(progress, stage, step, total_steps,
                       f"epoch {epoch + 1}/{config.max_epochs}, {where}"
                       + (f" (last loss {history.train_loss[-1]:.4f})" if history.train_loss else ""),
                       {"epoch": epoch + 1, "batch": count + 1})
            with autocast(device):
                loss = loss_fn(model, batch)
            if not torch.isfinite(loss):
                raise MicrostructureError(
                    "the training loss became NaN or infinite; lower the learning rate "
                    "or check the inputs for NaN values"
                )
            optimiser.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
            else:
                loss.backward()
                optimiser.step()
            total += float(loss.detach())
            count += 1
        if batches_per_epoch is None:
            batches_per_epoch = count
        train_loss = total / max(count, 1)
        history.train_loss.append(train_loss)
        if val_batches is not None:
            model.eval()
            vt, vc = 0.0, 0
            with torch.no_grad():
                for batch in val_batches():
                    check_cancel(cancel)
                    with autocast(device):
                        vt += float(loss_fn(model, batch))
                    vc += 1
            monitored = vt / max(vc, 1)
            history.val_loss.append(monitored)
        else:
            monitored = train_loss
        if monitored < best - config.min_delta:
            best = monitored
            best_state = copy.deepcopy(model.state_dict())
            history.best_epoch = epoch
            waited = 0
        else:
            waited += 1
        metrics = {"epoch": epoch + 1, "train_loss": train_loss}
        if history.val_loss:
            metrics["val_loss"] = history.val_loss[-1]
        last_report = time.perf_counter()
        report(
            progress,
            stage,
            epoch + 1,
            config.max_epochs,
            f"epoch {epoch + 1}: loss {train_loss:.4f}"
            + (f", validation {history.val_loss[-1]:.4f}" if history.val_loss else ""),
            metrics,
        )
        if waited >= config.patience:
            history.stopped_early = True
            break
    model.load_state_dict(best_state)
    model.eval()
    history.seconds = time.perf_counter() - start
    return history
