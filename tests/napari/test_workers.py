"""Jobs off the GUI thread: their warnings stay in view under the status line."""

from __future__ import annotations

import warnings


def test_a_job_in_a_worker_thread_keeps_its_warnings_in_view(qtbot, monkeypatch):
    monkeypatch.delenv("NAPARI_MICROSTRUCTURE_SYNC", raising=False)
    from napari_microstructure._napari._workers import Job, ProgressPanel

    def work(progress=None, cancel=None):
        warnings.warn("one crop covers 60 % of the image", UserWarning)
        warnings.warn("one crop covers 60 % of the image", UserWarning)   # the same message: shown once
        return 7

    panel = ProgressPanel()
    qtbot.addWidget(panel)
    got = []
    job = Job(work)
    job.finished.connect(got.append)
    panel.attach(job)
    job.start()
    qtbot.waitUntil(lambda: bool(got), timeout=20_000)
    assert got == [7]
    qtbot.waitUntil(lambda: "60 %" in panel.warning.text(), timeout=5_000)
    assert panel.warning.text() == "warning: one crop covers 60 % of the image"
    panel.attach(Job(work))                       # a new job starts with no warning shown
    assert panel.warning.text() == "" and panel.warning.isHidden()
