"""Running core computations off the GUI thread, with progress and Cancel.

Every core computation takes ``progress=`` (a callback receiving
:class:`~napari_microstructure.core.nn.progress.Progress`) and ``cancel=`` (a
:class:`threading.Event`). :class:`Job` runs one in a napari worker thread and
re-emits its reports as Qt signals (delivered on the GUI thread);
:class:`ProgressPanel` is the progress bar, status line and Cancel button the
dock widgets share. Set ``NAPARI_MICROSTRUCTURE_SYNC=1`` to run jobs
synchronously (debugging).
"""

from __future__ import annotations

import os
import threading
import traceback
import warnings
from typing import Any, Callable, Optional

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..core.errors import TrainingCancelled
from ..core.nn.progress import Progress


class Job(QObject):
    """One background computation.

    ``func(*args, progress=..., cancel=..., **kwargs)`` runs in a worker
    thread. Signals: ``progressed(Progress)``, ``warned(message)`` (a warning
    the computation raised; napari also shows it as a notification),
    ``finished(result)``, ``failed(exception)``, ``cancelled()``; exactly one
    of the last three fires, always on the GUI thread.
    """

    progressed = Signal(object)
    warned = Signal(str)
    finished = Signal(object)
    failed = Signal(object)
    cancelled = Signal()

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self._func = func
        self._args = args
        self._kwargs = kwargs
        self.cancel_event = threading.Event()
        self.worker = None
        self.running = False
        self._started: Optional[float] = None
        self._ended: Optional[float] = None

    @property
    def seconds(self) -> float:
        """Wall-clock seconds from :meth:`start` to the end (so far, while it runs); 0 before it starts."""
        import time

        if self._started is None:
            return 0.0
        return (self._ended if self._ended is not None else time.perf_counter()) - self._started

    def _run(self) -> Any:
        return self._func(*self._args, progress=self.progressed.emit, cancel=self.cancel_event, **self._kwargs)

    def _stop_clock(self) -> None:
        import time

        self._ended = time.perf_counter()

    def _on_error(self, exc: BaseException) -> None:
        self.running = False
        self._stop_clock()
        if isinstance(exc, TrainingCancelled):
            self.cancelled.emit()
        else:
            self.failed.emit(exc)

    def _on_return(self, result: Any) -> None:
        self.running = False
        self._stop_clock()
        self.finished.emit(result)

    def start(self) -> "Job":
        import time

        self.running = True
        self._started, self._ended = time.perf_counter(), None
        if os.environ.get("NAPARI_MICROSTRUCTURE_SYNC"):
            outcome: tuple = ()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    outcome = (True, self._run())
                except Exception as exc:  # noqa: BLE001 - reported through the signal
                    outcome = (False, exc)
            for w in caught:           # shown, and raised again for the caller's own filters
                self.warned.emit(str(w.message))
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            if outcome[0]:
                self._on_return(outcome[1])
            else:
                self._on_error(outcome[1])
            return self
        from napari.qt.threading import create_worker

        # connecting "errored" through _connect stops create_worker from also re-raising
        # the error in the GUI thread (it is reported once, through ``failed``)
        self.worker = create_worker(
            self._run, _start_thread=False,
            _connect={"returned": self._on_return, "errored": self._on_error,
                      "warned": lambda args: self.warned.emit(str(args[0]))},
        )
        self.worker.start()
        return self

    def cancel(self) -> None:
        self.cancel_event.set()


def format_seconds(seconds: float) -> str:
    """``"45 s"``, ``"3 min 10 s"``: a duration for a status line."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min {rest:02d} s"


class ProgressPanel(QWidget):
    """Progress bar, a status line and a Cancel button bound to a :class:`Job`.

    A new job starts from an empty bar and a fresh status line; each report
    moves the bar and shows the job's message with the estimated time left of
    the current *stage* (its own elapsed time and fraction done: a job's
    stages, e.g. feature extraction then training epochs, each fill the bar
    from 0 and run at their own pace); a cancelled or failed job leaves an
    empty bar.
    """

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setRange(0, 100)
        self.bar.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        # the warnings of the last job stay in view (napari's notifications fade)
        self.warning = QLabel("")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #e0a030")
        self.warning.setVisible(False)
        self._warnings: list[str] = []
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self._cancel)
        row = QHBoxLayout()
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(self.warning)
        self.job: Optional[Job] = None
        self._reset_stage(0.0)
        #: the widget's names of the API's parameters, e.g. ``{"fov_um": "Crop (µm)"}`` (see :meth:`word`)
        self.control_names: dict[str, str] = {}
        #: whole API phrases and what the widget says instead, e.g. a parameter's value as the
        #: control's choice: ``{"method='gradient-shap'": "Attribution: GradientSHAP"}`` (see :meth:`word`)
        self.control_phrases: dict[str, str] = {}

    def word(self, message: str) -> str:
        """A core message in the widget's terms: the widget's phrases for API phrases
        (:attr:`control_phrases`), its controls' names for the API's parameters (:attr:`control_names`;
        ``n_steps=4`` becomes ``'Steps' at 4``), and "µm" for the core's plain-text "um" after a number."""
        import re

        for phrase, said in self.control_phrases.items():
            message = message.replace(phrase, said)
        for name, control in self.control_names.items():
            message = re.sub(rf"\b{re.escape(name)}=([^\s,;)]+)", lambda m: f"'{control}' at {m.group(1)}", message)
            message = re.sub(rf"\b{re.escape(name)}\b", lambda m: f"'{control}'", message)
        return re.sub(r"(\d) um\b", "\\1 µm", message)

    def _reset_stage(self, started: float, stage: Optional[str] = None) -> None:
        """The current stage (name) began at ``started`` (perf_counter seconds)."""
        self._stage: Optional[str] = stage
        self._stage_started = started
        self._stage_fraction = 0.0
        self._last_report = started

    def attach(self, job: Job, message: str = "starting…") -> Job:
        """Show ``job``'s progress from an empty bar; Cancel stops it."""
        import time

        self.job = job
        self._reset_stage(time.perf_counter())
        self.cancel_button.setEnabled(True)
        self.bar.setValue(0)
        self.status.setText(message)
        self.clear_warnings()
        job.progressed.connect(self.show_progress)
        job.warned.connect(self.show_warning)
        job.finished.connect(lambda _: self._done("done", 100))
        job.failed.connect(lambda exc: self._done(f"error: {self.word(format_exception(exc))}", 0))
        job.cancelled.connect(lambda: self._done("cancelled; nothing was changed", 0))
        return job

    def show_progress(self, p: Progress) -> None:
        import time

        text = p.message or ""
        now = time.perf_counter()
        if p.total:
            fraction = min(max(p.fraction, 0.0), 1.0)
            self.bar.setValue(int(round(100 * fraction)))
            if self._stage is None:              # the first stage began with the job
                self._stage = p.stage
            elif p.stage != self._stage or fraction < self._stage_fraction:
                # a new stage (or the bar restarts): it began when the previous one was last heard from
                self._reset_stage(self._last_report, p.stage)
            self._stage_fraction = fraction
            elapsed = now - self._stage_started
            if 0.02 <= fraction < 1.0 and elapsed > 1.0:
                left = elapsed * (1.0 - fraction) / fraction
                text = f"{text} · about {format_seconds(left)} left" if text else f"about {format_seconds(left)} left"
        self._last_report = now
        if text:
            self.status.setText(text)

    def show_warning(self, message: str) -> None:
        """Keep a warning of the running job in view under the status line (each message once)."""
        message = self.word(message)
        if message in self._warnings:
            return
        self._warnings.append(message)
        self.warning.setText("\n".join(f"warning: {m}" for m in self._warnings))
        self.warning.setVisible(True)

    @property
    def warnings(self) -> list[str]:
        """The warnings of the last job, in the widget's terms, as shown."""
        return list(self._warnings)

    def clear_warnings(self) -> None:
        """Hide the last job's warnings (a new job or another action has started)."""
        self._warnings = []
        self.warning.setText("")
        self.warning.setVisible(False)

    def _cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.status.setText("cancelling…")

    def _done(self, message: str, bar: int) -> None:
        self.cancel_button.setEnabled(False)
        self.bar.setValue(bar)
        self.status.setText(message)

    @property
    def busy(self) -> bool:
        return self.job is not None and self.job.running


def format_exception(exc: BaseException) -> str:
    """One readable line for the status area (full traceback only for unexpected errors)."""
    from ..core.errors import MicrostructureError

    if isinstance(exc, MicrostructureError):
        return str(exc)
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()
