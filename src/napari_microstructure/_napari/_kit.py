"""The small widget kit every dock widget of the plugin is built from.

- :class:`DockWidget`: the base. Its body scrolls (two docks fit a 1920 x 1080
  screen whatever their content), its sections fold (:meth:`DockWidget.section`),
  and the progress bar, status line and Cancel sit below the scroll area, always
  visible. :meth:`DockWidget.start_job` is the one job lifecycle: the status is
  reset (and the last job's warnings cleared, as by any other action that sets the
  status: :meth:`DockWidget.set_status`, :meth:`DockWidget.error`), every action button of the widget (Save/Load/Explain... registered with
  :meth:`DockWidget.actions`) is disabled while the job runs, progress and the
  time left are shown, Cancel stops it and empties the bar, and the buttons come
  back when it ends whichever way.
- :class:`LayerPicker`: a combo box of the viewer's layers of one kind that
  follows additions, removals and renames; :func:`is_source_image` is the one
  filter of input images (never the plugin's own result layers,
  :func:`is_result_layer`).
- :class:`ModelFileRow`: the Save model / Load model row with its file dialogs.
- :func:`place_like`: scale, translate and units of a layer, for result layers
  that must line up with it (and share its units, so napari raises no
  "inconsistent units" warning).
- Choice lists and defaults come from core (:data:`BACKBONES`, :data:`LOSSES`,
  :func:`estimator_defaults`); colours from :mod:`napari_microstructure.core.colours`.

Widgets stay thin: they gather inputs, call the public API in a :class:`Job`
and show the result.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Callable, Iterable, Optional

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox, QFileDialog, QFrame, QHBoxLayout, QLineEdit, QPushButton, QScrollArea, QSizePolicy, QToolButton,
    QVBoxLayout, QWidget,
)

from ..core.choices import BACKBONES, LOSSES, MICROGRAPH_BACKBONES
from ._workers import Job, ProgressPanel, format_exception
from ._writer import METADATA_KEY

__all__ = ["BACKBONES", "LOSSES", "MICROGRAPH_BACKBONES", "DockWidget", "LayerPicker", "ModelFileRow", "SchedulerEdit", "Section", "estimator_defaults",
           "is_micrograph_image", "is_result_layer", "is_source_image", "on_theme_change", "place_like", "unwrap"]

MODEL_FILTER = "napari-microstructure model (*.pt);;All files (*)"
#: the widest a dock's content may be, in pixels: two docks side by side leave most of a
#: 1920-pixel screen to the image
MAX_DOCK_WIDTH = 430
#: the narrowest a dock is made, for readable tables and figures
MIN_DOCK_WIDTH = 340


def unwrap(obj: Any) -> Any:
    """The layer itself when napari hands plugins a public-only proxy (identity checks need it)."""
    return getattr(obj, "__wrapped__", obj)


def estimator_defaults(obj: Any) -> dict[str, Any]:
    """Keyword defaults of an estimator class's constructor or of a core function.

    The one source of the widgets' default values: a widget never restates a default.
    """
    sig = inspect.signature(obj.__init__ if isinstance(obj, type) else obj)
    return {k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}


#: ``metadata["role"]`` of the layers the plugin's readers open as inputs (EBSD patterns, their navigator);
#: every other role marks a result the plugin computed (space groups, attributions, ground truth...)
INPUT_ROLES = ("patterns", "navigator")


def is_result_layer(layer: Any) -> bool:
    """True for a layer the plugin made: probability maps, outliers, attribution overlays, EBSD results.

    They carry ``metadata["probmap"]`` (probability maps, also re-opened from
    their TIFF) or a ``metadata["role"]`` other than the inputs' (:data:`INPUT_ROLES`).
    """
    meta = getattr(layer, "metadata", None) or {}
    if METADATA_KEY in meta:
        return True
    role = meta.get("role")
    return role is not None and role not in INPUT_ROLES


def is_source_image(layer: Any) -> bool:
    """An image layer the user can train on, classify, map or explain: not one of the plugin's results."""
    return getattr(layer, "_type_string", "") == "image" and not is_result_layer(layer)


def is_micrograph_image(layer: Any) -> bool:
    """A source image that may be a micrograph: not an EBSD pattern map or its navigator (:data:`INPUT_ROLES`)."""
    return is_source_image(layer) and (getattr(layer, "metadata", None) or {}).get("role") not in INPUT_ROLES


def place_like(layer: Any) -> dict[str, Any]:
    """``scale``, ``translate`` (and ``units`` when set) of the last two axes of ``layer``."""
    place: dict[str, Any] = {"scale": tuple(layer.scale[-2:]), "translate": tuple(layer.translate[-2:])}
    units = getattr(layer, "units", None)
    if units is not None:
        place["units"] = tuple(str(u) for u in tuple(units)[-2:])
    return place


def has_physical_scale(layer: Any) -> bool:
    """True when ``layer`` carries a length unit (not napari's default "pixel")."""
    from ..api import _layer_unit_um

    return _layer_unit_um(layer) is not None


def show_scale_bar_in_current_viewer() -> None:
    """Turn on the scale bar of the viewer a reader or sample hook is working for.

    Called by the plugin's readers and samples when the layers they return
    have a physical scale (micrometres): the scale bar then says so.
    """
    try:
        import napari

        viewer = napari.current_viewer()
        if viewer is not None:
            viewer.scale_bar.visible = True
    except Exception:  # noqa: BLE001 - no viewer (a script calling the reader): nothing to show
        pass


def theme_colours(viewer: Any) -> tuple[str, str]:
    """The viewer's theme as (background, text) hex colours (napari's dark colours if it has none)."""
    from ..core.explain.plots import DARK_THEME

    try:
        from napari.utils.theme import get_theme

        theme = get_theme(viewer.theme)
        return theme.background.as_hex(), theme.text.as_hex()
    except Exception:  # noqa: BLE001 - the default dark colours
        return DARK_THEME


def on_theme_change(viewer: Any, callback: Any) -> None:
    """Call ``callback(event)`` whenever the viewer's theme changes (nothing for a viewer without themes)."""
    events = getattr(getattr(viewer, "events", None), "theme", None)
    if events is not None:
        events.connect(callback)


def theme_figure(figure: Any, viewer: Any) -> None:
    """Colour a matplotlib figure in the viewer's theme (napari's dark colours if it has none)."""
    from ..core.explain.plots import apply_theme

    apply_theme(figure, *theme_colours(viewer))


class Section(QWidget):
    """A titled block whose content folds away (click the title)."""

    def __init__(self, title: str, collapsed: bool = False, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.toggle = QToolButton()
        self.toggle.setText(title)
        self.toggle.setCheckable(True)
        self.toggle.setChecked(not collapsed)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.toggle.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.content = QWidget()
        self.content.setVisible(not collapsed)
        self._arrow(not collapsed)
        self.toggle.toggled.connect(self.set_expanded)
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 2, 0, 2)
        layout.setSpacing(2)
        layout.addWidget(self.toggle)
        layout.addWidget(line)
        layout.addWidget(self.content)

    def _arrow(self, expanded: bool) -> None:
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)

    def set_expanded(self, expanded: bool) -> None:
        """Show or fold the content."""
        self.content.setVisible(expanded)
        self._arrow(expanded)
        if self.toggle.isChecked() != expanded:
            self.toggle.setChecked(expanded)

    @property
    def expanded(self) -> bool:
        return self.toggle.isChecked()


class LayerPicker(QComboBox):
    """The viewer's layers that ``accept(layer)``, kept up to date; ``layer()`` is the chosen one.

    The item text is the layer name (``currentText()``), the item data the
    layer itself (``currentData()``). The choice is kept, by identity, when the
    list changes.
    """

    def __init__(self, viewer: Any, accept: Callable[[Any], bool], parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.accept = accept
        self._watched: set[int] = set()
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        events = viewer.layers.events
        for name in ("inserted", "removed", "moved", "reordered"):
            emitter = getattr(events, name, None)
            if emitter is not None:
                emitter.connect(self.refresh)
        self.refresh()

    def _alive(self) -> bool:
        try:
            self.objectName()
        except RuntimeError:
            return False
        return True

    def layers(self) -> list[Any]:
        """The layers on offer, in the viewer's order."""
        return [unwrap(layer) for layer in self.viewer.layers if self.accept(layer)]

    def refresh(self, *_: Any) -> None:
        """Rebuild the list (the current layer stays chosen while it exists)."""
        if not self._alive():
            return
        current = self.currentData()
        layers = self.layers()
        for layer in layers:
            if id(layer) not in self._watched:
                self._watched.add(id(layer))
                layer.events.name.connect(self.refresh)
        self.blockSignals(True)
        self.clear()
        for layer in layers:
            self.addItem(layer.name, layer)
            self.setItemData(self.count() - 1, layer.name, Qt.ItemDataRole.ToolTipRole)
        index = next((i for i, layer in enumerate(layers) if layer is current), 0 if layers else -1)
        self.setCurrentIndex(index)
        self.blockSignals(False)
        if current is not self.currentData():
            self.currentIndexChanged.emit(self.currentIndex())

    def layer(self) -> Optional[Any]:
        """The chosen layer, or None."""
        return self.currentData()

    def set_layer(self, layer: Any) -> bool:
        """Choose ``layer`` (by identity); False when it is not on offer."""
        layer = unwrap(layer)
        for i in range(self.count()):
            if self.itemData(i) is layer:
                self.setCurrentIndex(i)
                return True
        return False


class ModelFileRow(QWidget):
    """"Save model…" / "Load model…" buttons with their file dialogs.

    Parameters
    ----------
    load : callable
        ``load(path)``; called with the chosen file.
    save : callable, optional
        ``save(path)``; without it the row has only the Load button.
    default_name : str
        File name proposed by the Save dialog.
    """

    def __init__(self, load: Callable[[str], Any], save: Optional[Callable[[str], Any]] = None,
                 default_name: str = "model.pt", parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self._load, self._save, self._default = load, save, default_name
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.save_button: Optional[QPushButton] = None
        if save is not None:
            self.save_button = QPushButton("Save model…")
            self.save_button.clicked.connect(self.ask_save)
            row.addWidget(self.save_button)
        self.load_button = QPushButton("Load model…")
        self.load_button.clicked.connect(self.ask_load)
        row.addWidget(self.load_button)

    def buttons(self) -> list[QPushButton]:
        return [b for b in (self.save_button, self.load_button) if b is not None]

    def ask_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save model", self._default, MODEL_FILTER)
        if path and self._save is not None:
            self._save(path)

    def ask_load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load model", "", MODEL_FILTER)
        if path:
            self._load(path)


class SchedulerEdit(QLineEdit):
    """Where maps run: a dask scheduler address, ``local[:N]``, or empty for this process (docs/scaling.md).

    Empty means what the API's ``client=None`` means: the client created in this
    process if any, else ``$NAPARI_MICROSTRUCTURE_SCHEDULER``, else threads here.
    """

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setPlaceholderText("this process (or local, tcp://host:8786)")
        self.setToolTip("dask.distributed scheduler to run maps on, e.g. tcp://10.0.0.5:8786; 'local' or "
                        "'local:N': worker processes on this machine, started for the map (one per core, or N); "
                        "empty: this process (or $NAPARI_MICROSTRUCTURE_SCHEDULER)")

    def client(self) -> Optional[str]:
        """The address typed, or None."""
        return self.text().strip() or None


class DockWidget(QWidget):
    """Base of the plugin's dock widgets: scrolling sections above a progress panel, one job at a time.

    Subclasses build their content into :meth:`section` blocks (or
    ``self.body_layout``), register their action buttons with :meth:`actions`,
    override :meth:`action_states` to say which ones make sense now, and
    start work with :meth:`start_job`. Call :meth:`finish_layout` at the end
    of ``__init__``.

    Attributes
    ----------
    panel : ProgressPanel
        Progress bar, status line and Cancel.
    job : Job or None
        The job started last.
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.job: Optional[Job] = None
        self._actions: list[QPushButton] = []
        self._ending_job = False      # True while a job's on_done / on_failed / on_cancelled runs
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.body = QWidget()
        self.body_layout = QVBoxLayout(self.body)
        self.body_layout.setContentsMargins(4, 4, 4, 4)
        self.scroll.setWidget(self.body)
        self.panel = ProgressPanel()
        outer = QVBoxLayout(self)
        outer.setContentsMargins(2, 2, 2, 2)
        outer.addWidget(self.scroll, 1)
        outer.addWidget(self.panel)
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.show_scale_bar()

    # ------------------------------------------------------------- layout
    def section(self, title: str, collapsed: bool = False) -> QWidget:
        """Add a folding section to the body; returns its content widget (give it a layout)."""
        block = Section(title, collapsed)
        self.body_layout.addWidget(block)
        return block.content

    def finish_layout(self) -> None:
        """Push the content up; the dock's size follows the content (see :meth:`minimumSizeHint`)."""
        self.body_layout.addStretch(1)
        self.scroll.setMinimumHeight(200)

    def _content_width(self) -> int:
        """The width the body needs plus the vertical scroll bar and the margins (never clipped)."""
        bar = self.scroll.verticalScrollBar().sizeHint().width()
        margins = self.layout().contentsMargins()
        need = self.body.minimumSizeHint().width() + bar + margins.left() + margins.right() + 2
        return max(MIN_DOCK_WIDTH, need)

    def minimumSizeHint(self) -> Any:
        """As narrow as the content allows (measured when asked, after styling), 200 px of height."""
        from qtpy.QtCore import QSize

        return QSize(min(MAX_DOCK_WIDTH, self._content_width()), 200 + self.panel.sizeHint().height())

    def sizeHint(self) -> Any:
        """As tall as the content wants (up to a screen), so stacked docks share the height by need."""
        from qtpy.QtCore import QSize

        body = self.body.sizeHint()
        height = body.height() + self.panel.sizeHint().height() + 12
        return QSize(min(MAX_DOCK_WIDTH, self._content_width()), min(height, 1000))

    # ------------------------------------------------------------- status
    @property
    def status(self) -> Any:
        return self.panel.status

    def set_status(self, text: str) -> None:
        """Show ``text``; outside a job (and its result display) it starts anew: the last job's warnings go."""
        self._new_action()
        self.panel.status.setText(text)

    def _new_action(self) -> None:
        """A status set while no job runs, other than by a job's own callbacks, belongs to a new action:
        the orange warnings of the last job no longer apply to what the status line says."""
        if not self.busy and not self._ending_job:
            self.panel.clear_warnings()

    def error(self, exc_or_text: Any) -> None:
        """Show a problem in the status line (a MicrostructureError's message in the widget's terms:
        :meth:`ProgressPanel.word`)."""
        text = exc_or_text if isinstance(exc_or_text, str) else self.panel.word(format_exception(exc_or_text))
        self._new_action()
        self.panel.bar.setValue(0)
        self.panel.status.setText(f"error: {text}")

    # ------------------------------------------------------------- actions
    def actions(self, *buttons: QPushButton) -> None:
        """Register buttons that start or change something (disabled while a job runs)."""
        for b in buttons:
            if b is not None and b not in self._actions:
                self._actions.append(b)
        self.refresh_actions()

    def action_states(self) -> dict[Any, bool]:
        """``{button: enabled}`` when no job runs; buttons left out are enabled."""
        return {}

    def refresh_actions(self) -> None:
        try:
            self.objectName()
        except RuntimeError:  # the widget is gone
            return
        busy = self.busy
        states = self.action_states()
        for b in self._actions:
            b.setEnabled(not busy and bool(states.get(b, True)))

    # ------------------------------------------------------------- jobs
    @property
    def busy(self) -> bool:
        return self.job is not None and self.job.running

    def start_job(self, func: Callable[..., Any], *args: Any, on_done: Callable[[Any], Any],
                  message: str = "starting…", on_failed: Optional[Callable[[BaseException], Any]] = None,
                  on_progress: Optional[Callable[[Any], Any]] = None,
                  on_cancelled: Optional[Callable[[Any], Any]] = None, **kwargs: Any) -> Optional[Job]:
        """Run ``func(*args, progress=, cancel=, **kwargs)`` as this widget's job.

        Returns the job, or None (with a status line saying so) when one is running.
        """
        if self.busy:
            self.set_status("a job is running; wait for it or press Cancel")
            return None
        job = Job(func, *args, **kwargs)
        self.panel.attach(job, message)
        if on_progress is not None:
            job.progressed.connect(on_progress)
        job.finished.connect(lambda result: self._job_ended(on_done, result))
        job.failed.connect(lambda exc: self._job_ended(on_failed, exc))
        job.cancelled.connect(lambda: self._job_ended(on_cancelled, None))
        self.job = job
        job.running = True
        self.refresh_actions()
        job.start()
        return job

    def _job_ended(self, callback: Optional[Callable[[Any], Any]], value: Any) -> None:
        self.refresh_actions()
        if callback is not None:
            self._ending_job = True   # the job's own result display: its warnings stay in view
            try:
                callback(value)
            except Exception as exc:  # noqa: BLE001 - a display problem is reported, not raised in Qt
                self.error(exc)
            finally:
                self._ending_job = False
        self.refresh_actions()

    def cancel(self) -> None:
        """Stop the running job (the Cancel button)."""
        if self.job is not None:
            self.job.cancel()

    # ------------------------------------------------------------- viewer
    def _on_inserted(self, event: Any = None) -> None:
        try:
            self.objectName()
        except RuntimeError:
            return
        self.show_scale_bar()

    def show_scale_bar(self) -> None:
        """Turn napari's scale bar on once a layer has a physical scale (micrometres)."""
        try:
            if any(has_physical_scale(layer) for layer in self.viewer.layers):
                self.viewer.scale_bar.visible = True
        except Exception:  # noqa: BLE001 - a viewer without a scale bar (tests with stubs)
            pass


def add_buttons(layout: Any, buttons: Iterable[QPushButton], columns: int = 2) -> None:
    """Lay ``buttons`` out in rows of ``columns``."""
    from qtpy.QtWidgets import QGridLayout

    grid = QGridLayout()
    for i, b in enumerate(buttons):
        grid.addWidget(b, i // columns, i % columns)
    layout.addLayout(grid)
